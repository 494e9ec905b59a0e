-- Nonces are kept per key by count, not by age: a clock stepped back or forward
-- must never make a replay acceptable. The oldest of a key is found by (key, ts_ms).
DROP INDEX command_nonces_by_ts;
CREATE INDEX command_nonces_by_key_ts ON command_nonces (key, ts_ms);
