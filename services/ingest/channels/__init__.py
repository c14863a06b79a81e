"""One module per inbound channel, each a pure normaliser from the channel's payload to a `MessageReceived`."""
