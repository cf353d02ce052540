function block = xdream_next_block(server, rig, after, wait_s)
% XDREAM_NEXT_BLOCK  Wait (long poll) for the next block of rig RIG's sessions; [] if none
%   came within WAIT_S seconds (at most 30). AFTER: the key of the block you have ('' for
%   none), so that the same block is not handed out twice. Fetching a block acknowledges it.
%   block.session, .generation, .block, .key, .params, .stimuli(i).stimulus_id / .kind /
%   .repeats / .shape / .raw / .png
if nargin < 4
  wait_s = 20;
end
query = sprintf('?wait_s=%g', wait_s);
if ~isempty(after)
  query = [query '&after=' xdream_quote(after)];
end
block = xdream_get(server, ['/api/rig/' xdream_quote(rig) '/next' query], wait_s + 10);
end
