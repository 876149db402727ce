"""The error convention: a `GuestError` is a failure the tenant reports on
purpose (bad params, unknown function, bad state bytes); the host shows its
message. Any other exception is a bug: the component traps, like a Rust
panic, and the host isolates the input that caused it."""


class GuestError(Exception):
    """A failure reported on purpose, with a message the operator can act on."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def context(self, context: str) -> "GuestError":
        """The same error with `context: ` in front (where it happened)."""
        return GuestError(f"{context}: {self.message}")

    def __str__(self) -> str:
        return self.message
