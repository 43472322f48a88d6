"""A free TCP port on loopback, for the services that the demo, tests and benchmarks start locally
(one definition for the reward service, the judge service and the trainer)."""

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
