-- Partition ownership and fencing for groups shared by several consumers.
--
-- Each partition has at most one owner, a member id. A member claims a partition only while
-- its previous owner released it or is gone, and every cursor write checks the owner, so a
-- member that was fenced (silent past its max_poll_interval, its partitions taken) cannot
-- move a cursor it no longer owns.

ALTER TABLE changestream.cursors
    -- The member reading this partition; NULL while nobody does.
    ADD COLUMN owner text;

ALTER TABLE changestream.members
    -- The member's SQL session: a member whose session ended (its process died, or it was
    -- dropped without close) is gone at once, not only when its heartbeat gets old. Only
    -- trusted while the server has not restarted since backend_start.
    ADD COLUMN backend_pid   integer,
    ADD COLUMN backend_start timestamptz;
