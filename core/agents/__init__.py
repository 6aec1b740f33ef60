"""The four agents (Librarian, Writer, Verifier, Rewriter): contracts and the code that runs them."""
