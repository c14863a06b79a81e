"""Imported first by every service's `__main__`: Python's cyclic garbage collector stays off while the
process imports its modules and builds its app, and `shared.http.serve` freezes what start-up made
(never scanned again) and turns the collector back on. Imports allocate hundreds of thousands of
objects and none of them is garbage; collecting meanwhile cost 10–14 % of start-up's CPU (imports of
tickets and ingest, three runs each: 1.54/1.27/1.29 s with it, 1.32/1.13/1.16 s without), which counts
when every process of a machine restarts at once (docs/reliability.md)."""

import gc

gc.disable()
