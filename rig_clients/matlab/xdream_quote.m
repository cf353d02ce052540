function out = xdream_quote(text)
% XDREAM_QUOTE  Percent-encode TEXT for a URL path segment or query value (MATLAB's
%   urlencode is not in GNU Octave): letters, digits and -_.~ stay, every other byte is %XX.
bytes = unicode2native(char(text), 'UTF-8');
keep = (bytes >= 'a' & bytes <= 'z') | (bytes >= 'A' & bytes <= 'Z') | ...
       (bytes >= '0' & bytes <= '9') | ismember(bytes, double('-_.~'));
parts = cell(1, numel(bytes));
for i = 1:numel(bytes)
  if keep(i)
    parts{i} = char(bytes(i));
  else
    parts{i} = sprintf('%%%02X', bytes(i));
  end
end
out = [parts{:}];
end
