"""Customer confirmation: asking the customer of a resolved ticket whether it is solved, and their rating."""
