"""Errors a publisher can act on."""


class MessageTooLarge(ValueError):
    """A message is over the bus's size limit; frames must be sampled smaller, not the limit raised."""

    def __init__(self, topic: str, size: int, limit: int) -> None:
        super().__init__(f"a {size}-byte message for {topic} is over the {limit}-byte limit of the bus")
        self.topic, self.size, self.limit = topic, size, limit


class TransportUnavailable(ConnectionError):
    """The bus cannot be reached right now (broker down, leader moving).

    Not the message's fault: a consumer waits and tries again instead of counting it
    towards the message's retries and dead-lettering it.
    """


class ReplayFromHold(Exception):
    """Raised by a handler whose state for an open answer is gone (its model server restarted).

    The transport rewinds the partition to its oldest held record, the answer's first, and
    delivers from there again, so the answer is rebuilt from the start through fresh state.
    """
