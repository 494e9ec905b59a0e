-- Which recorder wrote a segment: 'native' (the in-process RTSP recorder) or
-- 'ffmpeg'; NULL for rows from before, and for segments a crash cut short
-- that the next start indexed.
ALTER TABLE segments ADD COLUMN recorder TEXT;
