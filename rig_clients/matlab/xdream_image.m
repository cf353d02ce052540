function img = xdream_image(server, stimulus)
% XDREAM_IMAGE  The image of one stimulus of a block, as a height x width x 3 uint8 array.
%   stimulus: an element of block.stimuli from xdream_next_block. The server sends the raw
%   bytes row-major (C order); MATLAB arrays are column-major, hence the permute.
if exist('OCTAVE_VERSION', 'builtin') ~= 0
  bytes = uint8(webread([server stimulus.raw], xdream_options(30, 'ContentType', 'text')));
else
  bytes = webread([server stimulus.raw], xdream_options(30, 'ContentType', 'binary'));
end
shape = double(stimulus.shape(:)');
img = permute(reshape(bytes(:), [shape(3) shape(2) shape(1)]), [3 2 1]);
end
