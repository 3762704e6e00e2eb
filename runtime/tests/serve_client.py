"""OpenAI Python client against a running `mio serve` (driven by runtime/tests/serve.rs).

The tiny model has random weights: structure is asserted, never content.
Env: MIO_BASE_URL, MIO_API_KEY, MIO_IMAGE (png), MIO_AUDIO (wav).
"""
import base64
import os
import sys
import threading
import time

import openai
from openai import OpenAI

BASE = os.environ["MIO_BASE_URL"]
KEY = os.environ["MIO_API_KEY"]
client = OpenAI(base_url=BASE, api_key=KEY, max_retries=3, timeout=120)
model = client.models.list().data[0].id


T0 = time.time()


def ok(name):
    print("ok %s (%.1f s)" % (name, time.time() - T0), flush=True)


def user(content):
    return [{"role": "user", "content": content}]


# Text, non-streaming.
r = client.chat.completions.create(model=model, messages=user("Hello, who are you?"), max_tokens=6)
assert r.object == "chat.completion" and len(r.choices) == 1, r
assert r.choices[0].message.role == "assistant"
assert r.choices[0].finish_reason in ("stop", "length")
assert 0 < r.usage.completion_tokens <= 6 and r.usage.prompt_tokens > 0
text_prompt = r.usage.prompt_tokens
ok("text")

# Image input as a data URL: the prompt grows by the image's tokens.
with open(os.environ["MIO_IMAGE"], "rb") as f:
    url = "data:image/png;base64," + base64.b64encode(f.read()).decode()
parts = [{"type": "text", "text": "Hello, who are you?"}, {"type": "image_url", "image_url": {"url": url}}]
r = client.chat.completions.create(model=model, messages=user(parts), max_tokens=6)
assert r.usage.prompt_tokens >= text_prompt + 32, (r.usage, text_prompt)
ok("image_input")

# Audio input part.
with open(os.environ["MIO_AUDIO"], "rb") as f:
    wav_in = f.read()
parts = [{"type": "text", "text": "What is said?"},
         {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav_in).decode(), "format": "wav"}}]
r = client.chat.completions.create(model=model, messages=user(parts), max_tokens=4)
assert r.usage.prompt_tokens > text_prompt, r.usage
ok("audio_input")

# Audio output (voice): message.audio holds a base64 WAV.
r = client.chat.completions.create(model=model, messages=user("Say hi."), max_tokens=40,
                                   modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"})
audio = r.choices[0].message.audio
assert audio is not None and audio.id and audio.expires_at > 0, r.choices[0].message
wav = base64.b64decode(audio.data)
assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE" and len(wav) > 44, wav[:16]
ok("audio_output")

# Streaming: a role chunk, content chunks, a finish reason, then the stream ends ([DONE]).
chunks = list(client.chat.completions.create(model=model, messages=user("Hello"), max_tokens=8, stream=True,
                                             stream_options={"include_usage": True}))
usage = chunks.pop()
assert usage.choices == [] and 0 < usage.usage.completion_tokens <= 8, usage
assert chunks[0].choices[0].delta.role == "assistant"
assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
assert chunks[-1].choices[0].finish_reason in ("stop", "length")
assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
ok("streaming")

# Cancel by disconnect: take the first chunk of a long answer and hang up (the server
# notices at its next write, a token or the 1 s keep-alive; the Rust side checks its log),
# then the server answers the next request.
stream = client.chat.completions.create(model=model, messages=user("Hello"),
                                        max_tokens=3000, stream=True)
for _ in stream:
    break
stream.close()
print("cancelled-stream", chunks[0].id, flush=True)
r = client.chat.completions.create(model=model, messages=user("Hello"), max_tokens=2)
assert r.choices[0].finish_reason in ("stop", "length")
ok("cancel_by_disconnect")

# Speech (TTS) and transcription (ASR).
speech = client.audio.speech.create(model=model, voice="alloy", input="Hello there.", response_format="wav",
                                    extra_body={"max_tokens": 40})
data = speech.read()
assert data[:4] == b"RIFF", data[:16]
ok("speech")
with open(os.environ["MIO_AUDIO"], "rb") as f:
    t = client.audio.transcriptions.create(model=model, file=f, extra_body={"max_tokens": 8})
assert isinstance(t.text, str)
ok("transcription")

# Errors: remote URL, wrong key, body too large, bad role.
try:
    client.chat.completions.create(model=model, max_tokens=2, messages=user(
        [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]))
    raise AssertionError("remote URL accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400 and e.code == "remote_url_refused", e
ok("remote_url_refused")
try:
    OpenAI(base_url=BASE, api_key="wrong", max_retries=0).models.list()
    raise AssertionError("wrong key accepted")
except openai.AuthenticationError as e:
    assert e.status_code == 401 and e.code == "invalid_api_key", e
ok("api_key_refused")
big = "data:image/png;base64," + "A" * (2 * 1024 * 1024)
try:
    client.chat.completions.create(model=model, max_tokens=2, messages=user(
        [{"type": "image_url", "image_url": {"url": big}}]))
    raise AssertionError("body over --max-body-mb accepted")
except openai.APIStatusError as e:
    assert e.status_code == 413 and e.code == "request_too_large", e
ok("body_too_large")

# 429 under load: queue 1 (one running, one waiting), six at once, no retries.
codes = []
lock = threading.Lock()
busy = OpenAI(base_url=BASE, api_key=KEY, max_retries=0, timeout=120)


def one():
    try:
        busy.chat.completions.create(model=model, messages=user("Hello"), max_tokens=200)
        code = 200
    except openai.RateLimitError as e:
        assert e.code == "rate_limit_exceeded" and e.type == "rate_limit_error", e
        code = 429
    with lock:
        codes.append(code)


threads = [threading.Thread(target=one) for _ in range(6)]
[t.start() for t in threads]
[t.join() for t in threads]
assert len(codes) == 6 and 200 in codes and 429 in codes, codes
ok("queue_full_429 %s" % sorted(codes))
print("all ok", flush=True)
sys.exit(0)
