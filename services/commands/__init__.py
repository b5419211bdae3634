"""The command endpoints and the handlers behind them."""
