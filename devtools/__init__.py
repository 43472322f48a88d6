"""Test and benchmark harnesses (local vLLM, in-process servers, scripted backends, a latency
proxy): used from the source tree only, never installed in a service or trainer image."""
