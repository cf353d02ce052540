function options = xdream_options(timeout_s, varargin)
% XDREAM_OPTIONS  weboptions for the xdream-rig API: TIMEOUT_S, any further name/value pairs,
%   and the server's access token (needed beyond loopback; docs/dashboard.md) from the
%   environment variable XDREAM_TOKEN when it is set.
options = weboptions('Timeout', timeout_s, varargin{:});
token = getenv('XDREAM_TOKEN');
if ~isempty(token)
  options.HeaderFields = [options.HeaderFields; {'Authorization', ['Bearer ' token]}];
end
end
