"""What `make redrive` commits: the first dead letter not yet re-driven, and the re-driven ones after it."""
from deploy.redrive import Progress, parse_ranges, ranges


def test_offsets_are_written_as_ranges_and_read_back():
    assert ranges({3, 4, 5, 9, 11, 12}) == "3-5,9,11-12"
    assert parse_ranges("3-5,9,11-12") == {3, 4, 5, 9, 11, 12}
    assert parse_ranges("") == set() and parse_ranges("someone else's,7") == {7}


def test_too_many_ranges_keep_the_lowest_within_the_limit():
    alternating = set(range(0, 2000, 2))
    text = ranges(alternating, limit=100)
    assert len(text) <= 100 and parse_ranges(text) == set(range(0, 2 * len(text.split(",")), 2))


def test_the_commit_stops_at_the_first_letter_left_out_and_remembers_what_was_sent_after_it():
    progress = Progress(10)
    progress.saw(10, done=True)
    progress.saw(11, done=False)  # another topic's: left for a later run
    progress.saw(12, done=True)
    progress.saw(13, done=True)
    assert progress.commit_point() == (11, "12-13")


def test_a_later_run_passes_over_what_was_sent_and_moves_past_once_nothing_is_left():
    later = Progress(11, done=parse_ranges("12-13"))
    for offset in (11, 12, 13, 14):
        later.saw(offset, done=True)
    assert later.commit_point() == (15, "")


def test_nothing_read_commits_where_it_started():
    assert Progress(7, done={9}).commit_point() == (7, "9")
