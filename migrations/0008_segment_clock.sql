-- What the clocks said when a segment closed. `boot_id` (the kernel's boot id) and
-- `boot_ms` (CLOCK_BOOTTIME) let retention judge a segment's age by the boot clock, so a
-- wall clock stepped forward cannot make fresh footage look old. `unsynced` marks footage
-- recorded while the wall clock was not synchronised (adjtimex STA_UNSYNC): its times are
-- only as good as the board's clock. NULL/0 for segments indexed without a recorder run
-- (reconciliation at start) or before this migration.
ALTER TABLE segments ADD COLUMN boot_id TEXT;
ALTER TABLE segments ADD COLUMN boot_ms INTEGER;
ALTER TABLE segments ADD COLUMN unsynced INTEGER NOT NULL DEFAULT 0;
