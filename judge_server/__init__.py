"""The judge service: a vision-language model rates restorations (IRPO's expert-preference reward).

app (FastAPI routes), judge (one judgement), prompts + prompts/*.txt (what the model is asked),
parsing (answers to scores), backend (the OpenAI-compatible client), completion (the backend's
answer, validated), settings (config and env vars), client (JudgeClient for the trainer), cli
(`judge-server`). The local vLLM and scripted backends for tests and benchmarks live in devtools/.
"""
