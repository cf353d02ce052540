function data = xdream_get(server, path, timeout_s)
% XDREAM_GET  GET a JSON answer from an xdream-rig server; [] for an empty answer (204).
%   data = xdream_get('http://127.0.0.1:8000', '/api/health')
%   Works in MATLAB R2016b+ (webread, jsondecode) and GNU Octave 7+.
if nargin < 3
  timeout_s = 30;
end
options = xdream_options(timeout_s, 'ContentType', 'text');
text = webread([server path], options);
if isempty(text)
  data = [];
else
  data = jsondecode(text);
end
end
