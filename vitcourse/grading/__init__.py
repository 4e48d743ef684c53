"""The instructor's autograder: hidden tests run on the trusted side, student code in a sandbox."""
