"""StreamPay outbound webhooks."""
