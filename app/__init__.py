"""The radmatch service and its command line."""
