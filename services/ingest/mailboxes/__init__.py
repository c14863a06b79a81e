"""IMAP mailboxes ingest polls: configuration (`config`), state and leases (`store`), the IMAP
conversation (`imap`), the polling loop (`poller`) and the admin endpoints (`api`)."""
