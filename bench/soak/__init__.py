"""`make soak`: the churn soak of a whole deployment (see __main__.py)."""
