-- Moves a console passkey's signature counter forward (WebAuthn §7.2 step 21).
--
-- KEYS: the credential's counter. ARGV: the presented counter.
-- Answers `advanced`, or `regressed` when it would not move forward (a cloned authenticator).
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
local presented = tonumber(ARGV[1])
if (stored == 0 and presented == 0) or presented > stored then
  redis.call('SET', KEYS[1], ARGV[1])
  return 'advanced'
end
return 'regressed'
