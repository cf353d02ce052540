function reply = xdream_post(server, path, body)
% XDREAM_POST  POST a struct as JSON to an xdream-rig server; its JSON answer, decoded.
%   MATLAB sends the JSON itself; GNU Octave's webwrite can only send forms, so it sends the
%   JSON as the one form field "json", which the server takes the same way (PROTOCOL.md 10).
%   Lists must be cell arrays (jsonencode writes a 1-element array as a scalar otherwise).
json = jsonencode(body);
if exist('OCTAVE_VERSION', 'builtin') ~= 0
  text = webwrite([server path], 'json', json, xdream_options(30));
else
  options = xdream_options(30, 'MediaType', 'application/json', 'ContentType', 'text');
  text = webwrite([server path], json, options);
end
reply = jsondecode(text);
end
