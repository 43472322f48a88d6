"""The ground floor of IRPO: what the trainer, the reward service and the judge service share.

tasks (the task vocabulary), reward_spec (term names, weights, the combination of R), imaging
(image bytes <-> float arrays, torch-free), device (torch device choice), http_guards (body size and time
limits, bearer auth, the counting guard), json_input (strict client JSON, bounded 422s), openapi_doc
(declared bodies, errors and bearer scheme), service_client (the clients' bearer-token HTTP pool) and process
(free port, managed local servers). Nothing here imports a package above it; only `device` imports
torch, so the judge service runs without it.
"""
