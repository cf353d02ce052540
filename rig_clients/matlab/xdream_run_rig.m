function blocks = xdream_run_rig(server, rig, session, present, count, max_blocks)
% XDREAM_RUN_RIG  Run rig RIG's part of a session over HTTP alone, until SESSION ends.
%   present(img, params) shows one image and returns its onset (seconds, the rig's clock);
%   count(img, onset) returns the spike counts of that presentation, one per channel (on a
%   real rig: read from the recording system around ONSET). Each block's images are shown
%   as often as asked, then reported with xdream_post. Returns the number of blocks shown.
if nargin < 6
  max_blocks = Inf;
end
CHUNK = 20;  % presentations per body: 20 of 96 channels, form-encoded, fit in 64 KiB
after = '';
blocks = 0;
while blocks < max_blocks
  block = xdream_next_block(server, rig, after, 5);
  if isempty(block)
    state = xdream_get(server, ['/api/sessions/' session]);
    if any(strcmp(state.state, {'finished', 'aborted'}))
      return
    end
    continue
  end
  after = block.key;
  shown = {};
  counted = {};
  for i = 1:numel(block.stimuli)
    stimulus = block.stimuli(i);
    img = xdream_image(server, stimulus);
    for r = 1:stimulus.repeats
      onset = present(img, block.params);
      id = sprintf('%s-b%d-r%d', stimulus.stimulus_id, block.block, r - 1);
      shown{end + 1} = struct('presentation_id', id, 'stimulus_id', stimulus.stimulus_id, ...
                              'onset', onset, 'outcome', 'ok');
      counted{end + 1} = struct('presentation_id', id, 'stimulus_id', stimulus.stimulus_id, ...
                                'counts', {num2cell(count(img, onset))});
    end
  end
  path = ['/api/sessions/' block.session];
  for first = 1:CHUNK:numel(shown)  % bodies stay under the server's 64 KiB limit
    part = first:min(first + CHUNK - 1, numel(shown));
    xdream_post(server, [path '/presented'], struct('generation', block.generation, ...
                'presentations', {shown(part)}));
    xdream_post(server, [path '/responses'], struct('generation', block.generation, ...
                'responses', {counted(part)}));
  end
  blocks = blocks + 1;
end
end
