"""Pure domain: no Google client is imported anywhere below this package."""
