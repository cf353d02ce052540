function [C, timingfile, userdefined_trialholder] = xdream_monkeylogic_userloop(MLConfig, TrialRecord)
% XDREAM_MONKEYLOGIC_USERLOOP  An example NIMH MonkeyLogic (ML2) userloop: one trial per
%   stimulus of the block xdream-rig has in flight. An EXAMPLE to adapt, not run in this
%   project's tests (MonkeyLogic needs MATLAB and a rig); the functions it calls are.
%
%   Set SERVER, RIG and SESSION below. The timing file ('xdream_trial.m', yours) shows
%   TaskObject 1 for block.params.on_ms after fixation, and stores its photodiode onset
%   with  TrialRecord.User.onset = ...  (or an event code the recording system also sees).
%   Spike counts come from your recording system (e.g. Plexon, Blackrock, Open Ephys);
%   COUNT_SPIKES below is the place to read them around the onset.
persistent block after queue done
SERVER = 'http://127.0.0.1:8000';
RIG = 'rig-a';
C = []; timingfile = 'xdream_trial.m'; userdefined_trialholder = '';
if isempty(after), after = ''; queue = {}; done = {}; end

% The trial that just ran: report it (presentation and counts), once per trial.
if ~isempty(TrialRecord.CurrentTrialNumber) && TrialRecord.CurrentTrialNumber > 0 && ~isempty(queue)
  last = queue{1}; queue(1) = [];
  ok = TrialRecord.TrialErrors(end) == 0;  % 0: correct (fixation held)
  onset = TrialRecord.User.onset;
  id = sprintf('%s-b%d-r%d', last.stimulus_id, block.block, last.repeat);
  outcome = 'aborted'; if ok, outcome = 'ok'; end
  path = ['/api/sessions/' block.session];
  xdream_post(SERVER, [path '/presented'], struct('generation', block.generation, ...
    'presentations', {{struct('presentation_id', id, 'stimulus_id', last.stimulus_id, ...
    'onset', onset, 'outcome', outcome)}}));
  if ok
    counts = count_spikes(onset);  % one per recorded channel, indexed by channel number
    xdream_post(SERVER, [path '/responses'], struct('generation', block.generation, ...
      'responses', {{struct('presentation_id', id, 'stimulus_id', last.stimulus_id, ...
      'counts', {num2cell(counts)})}}));
  end
end

% Nothing queued: wait for the next block (the same block again if stimuli still lack
% responses: the server sends them as a new block).
while isempty(queue)
  block = xdream_next_block(SERVER, RIG, after, 20);
  if isempty(block), continue, end
  after = block.key;
  for i = 1:numel(block.stimuli)
    s = block.stimuli(i);
    file = fullfile(tempdir, [s.stimulus_id '.png']);
    imwrite(xdream_image(SERVER, s), file);
    for r = 1:s.repeats
      queue{end + 1} = struct('stimulus_id', s.stimulus_id, 'file', file, 'repeat', r - 1);
    end
  end
  queue = queue(randperm(numel(queue)));  % interleave, as the reference code does
end
C = {sprintf('pic(%s,0,0)', queue{1}.file)};
end

function counts = count_spikes(onset)
% Read the evoked-window spike counts of each channel around ONSET from your recording
% system here; this placeholder refuses to invent data.
error('xdream:counts', 'count_spikes: connect your recording system here (onset %g)', onset);
end
