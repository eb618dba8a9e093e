"""seq2seq-serve's HTTP app (FastAPI): POST /translate, GET /health, GET /info, and the page at /.

A :class:`~seq2seq.serving.guard.Guard` checks each request's Host, content type, body size and time before
the app parses it; requests are then checked by pydantic against the server's limits
(:class:`~seq2seq.serving.settings.ServeConfig`). A bad one gets a 4xx answer
``{"error": "<what is wrong and what to do>", "detail": [...]}``. Requests are decoded by a
:class:`~seq2seq.serving.batcher.Batcher` per model, which gathers concurrent ones into shared token batches;
a full queue answers 503 with Retry-After. The answer's JSON is built on a worker thread, never on the event
loop, and its attention weights are bounded (``max_attention_cells``). A request never names a file: the
models are loaded once, at start.
"""

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException
from torch import Tensor

from seq2seq import __version__
from seq2seq.errors import Seq2SeqError
from seq2seq.inference.translator import SourceTooLong, Translation, Translator
from seq2seq.serving.batcher import Batcher, QueueFull
from seq2seq.serving.guard import Guard
from seq2seq.serving.settings import ServeConfig

log = logging.getLogger(__name__)

PAGE = Path(__file__).parent / "page"  # index.html, page.css, page.js: package data, nothing fetched at run time
MAX_ALPHA = 10.0
RETRY_AFTER_S = 1  # what a 503 for a full queue tells the client to wait


@dataclasses.dataclass
class Model:
    """A loaded model and what /info says about it."""

    name: str  # "main" or "compare"
    checkpoint: str
    translator: Translator
    best_valid_bleu: float | None

    def info(self) -> dict:
        cfg = self.translator.config
        return {"name": self.name, "checkpoint": Path(self.checkpoint).name,
                "pair": f"{cfg.data.src_lang}-{cfg.data.tgt_lang}", "src_lang": cfg.data.src_lang,
                "tgt_lang": cfg.data.tgt_lang, "attention": cfg.model.attention, "cell": cfg.model.cell,
                "parameters": self.translator.model.num_parameters(), "best_valid_bleu": self.best_valid_bleu,
                "decode": dataclasses.asdict(self.translator.decode)}


def load(name: str, checkpoint: str, cfg: ServeConfig) -> Model:
    """The model of ``checkpoint`` with ``cfg``'s decode defaults, and its best validation BLEU."""
    from seq2seq.checkpoint import load_checkpoint

    settings = cfg if name == "main" else dataclasses.replace(cfg, checkpoint=checkpoint, ensemble=[])
    translator = Translator.from_config(settings, cfg.decode)
    best = (load_checkpoint(checkpoint).get("progress") or {}).get("best_bleu")
    return Model(name, checkpoint, translator, best if best is not None and best >= 0 else None)


class Translated(BaseModel):
    """One source sentence's answer; the optional fields come with ``"attention": true``."""

    text: str = Field(description="the best translation: the line seq2seq-translate prints")
    hypotheses: list[str] = Field(description="the n-best translations, best first, distinct")
    scores: list[float] = Field(description="their search scores (length-penalised log-probabilities)")
    src_pieces: list[str] | None = Field(None, description="the source subwords (heat-map columns)")
    tgt_pieces: list[list[str]] | None = Field(None, description="per hypothesis, its target subwords")
    attention: list[list[list[float]]] | None = Field(
        None, description="per hypothesis, weights (T+1, S): a row per target subword and one for </s>")
    cross_attention: list[list[list[list[list[float]]]]] | None = Field(
        None, description="with \"layers\": true, per hypothesis, per decoder layer (the lowest first), per head: "
                          "its cross-attention weights (T+1, S); the top layer's heads' mean is attention")
    self_attention: list[list[list[list[float]]]] | None = Field(
        None, description="with \"layers\": true and a Transformer encoder, per encoder layer (the lowest first), "
                          "per head: its self-attention weights (S, S), a row per source subword")


class TranslateResponse(BaseModel):
    translations: list[Translated]


def request_model(cfg: ServeConfig) -> type[BaseModel]:
    """The body of POST /translate, with ``cfg``'s limits; unknown fields and loose types are refused."""
    sentence = Annotated[str, StringConstraints(max_length=cfg.max_chars)]

    class TranslateRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

        text: list[sentence] = Field(min_length=1, max_length=cfg.max_sentences,
                                     description=f"1 to {cfg.max_sentences} sentences of at most "
                                                 f"{cfg.max_chars} characters")
        beam_size: int | None = Field(None, ge=1, le=cfg.max_beam, description="1: greedy")
        nbest: int | None = Field(None, ge=1, le=cfg.max_beam, description="at most beam_size")
        alpha: float | None = Field(None, ge=0, le=MAX_ALPHA, description="length penalty")
        attention: bool = Field(False, description="also return subwords and attention weights")
        layers: bool = Field(False, description="also every layer's and head's attention (cross_attention, "
                                                "self_attention); implies attention")
        model: Literal["main", "compare"] = Field("main", description="compare: the server's compare= model")

    return TranslateRequest


def answer(result: Translation, attention: bool) -> dict:
    """One :class:`Translated`, as plain JSON data (the fields without a value left out)."""
    out: dict = {"text": result.text, "hypotheses": result.hypotheses, "scores": result.scores}
    if attention:
        out["src_pieces"] = result.src_pieces
        out["tgt_pieces"] = result.tgt_pieces
        out["attention"] = [rounded(a) for a in result.attention]
    return out


def rounded(weights: Tensor) -> list[list[float]]:
    """A map (rows, S) as JSON rows of weights rounded to 4 digits."""
    return [[round(w, 4) for w in row] for row in weights.tolist()]


def layer_answer(translator: Translator, result: Translation) -> dict:
    """Every layer's and head's attention of ``result`` (``"layers": true``): the decoder's cross-attention per
    hypothesis, and a Transformer encoder's self-attention once (it depends on the source alone)."""
    with_self = translator.model.attention_layout.self_layers > 0
    maps = [translator.layer_attention(result, n, "all", with_self and n == 0) for n in range(len(result.attention))]
    out: dict = {"cross_attention": [by_layer(m.cross) for m in maps]}
    if with_self and maps:
        out["self_attention"] = by_layer(maps[0].self_attention)
    return out


def by_layer(layers: dict[int, Tensor]) -> list[list[list[list[float]]]]:
    """Layer -> (N, rows, S) as JSON: a list of layers, the lowest first, each a list of its heads' maps."""
    return [[rounded(head) for head in layers[i]] for i in sorted(layers)]


def render(results: list[Translation], attention: bool, max_cells: int, layers: Translator | None = None) -> bytes:
    """The JSON of a :class:`TranslateResponse`; run on a worker thread (rounding and encoding the attention
    weights takes long enough to stall the event loop). ``layers``: the translator whose every layer and head
    the answer also holds (``"layers": true``), computed here. More than ``max_cells`` weights: a 422, before
    the work."""
    attention = attention or layers is not None
    if attention:
        check_cells(results, max_cells, layers)
    answers = [answer(r, attention) for r in results]
    if layers is not None:
        answers = [a | layer_answer(layers, r) for a, r in zip(answers, results, strict=True)]
    body = {"translations": answers}
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def check_cells(results: list[Translation], max_cells: int, layers: Translator | None) -> None:
    """A 422 when the answer would hold more than ``max_cells`` attention weights."""
    cells = sum(a.numel() for r in results for a in r.attention)
    if layers is not None:
        with_self = layers.model.attention_layout.self_layers > 0
        cells += sum(layers.attention_cells(r, "all", with_self) for r in results if r.attention)
    if cells > max_cells:
        fewer = "layers: false, " if layers is not None else ""
        raise HTTPException(422, f"attention: the answer would hold {cells} attention weights, more than the server's "
                                 f"max_attention_cells={max_cells}; send fewer sentences, a smaller nbest, {fewer}or "
                                 "attention: false")


def create_app(models: list[Model], cfg: ServeConfig) -> FastAPI:
    """The app over ``models`` (the first is "main", an optional second "compare"), limits from ``cfg``."""
    batchers = {m.name: Batcher(m.translator, cfg.batch_wait_ms / 1000, cfg.max_queue) for m in models}
    by_name = {m.name: m for m in models}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for batcher in batchers.values():
            batcher.start()
        yield
        for batcher in batchers.values():
            batcher.stop()
        log.info("stopped")

    app = FastAPI(title="seq2seq", version=__version__, lifespan=lifespan,
                  description="RNN-attention translation: POST /translate, GET /info, GET /health; the page at /")
    _add_error_handlers(app, cfg)
    app.add_middleware(Guard, cfg=cfg)
    app.post("/translate", response_model=TranslateResponse, response_model_exclude_none=True,
             summary="Translate sentences")(_translate_endpoint(by_name, batchers, cfg))

    @app.get("/health", summary="Is the server up")
    async def health() -> dict:
        return {"status": "ok", "queued": sum(b.queued for b in batchers.values())}

    @app.get("/info", summary="The model(s), decode defaults and limits")
    async def info() -> dict:
        return {**models[0].info(), "compare": models[1].info() if len(models) > 1 else None,
                "limits": _limits(models[0], cfg), "version": __version__}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE / "index.html")

    app.mount("/static", StaticFiles(directory=PAGE), name="static")
    return app


def _translate_endpoint(by_name: dict[str, Model], batchers: dict[str, Batcher], cfg: ServeConfig):
    """POST /translate: check the request against its model, queue it on that model's batcher, render the
    answer (and its attention) off the event loop."""
    body_model = request_model(cfg)

    async def translate(body: body_model) -> Response:  # type: ignore[valid-type]
        if body.model not in by_name:
            raise HTTPException(422, "model: there is no compare model; start the server with compare=PATH")
        translator = by_name[body.model].translator
        beam, nbest = body.beam_size or translator.decode.beam_size, body.nbest or translator.decode.nbest
        if nbest > beam:
            raise HTTPException(422, f"nbest={nbest} is above beam_size={beam}: a beam of K keeps at most K "
                                     "hypotheses; lower nbest or raise beam_size")
        decode = translator.with_decode(body.beam_size, body.alpha, body.nbest)
        try:
            results = await batchers[body.model].translate(body.text, decode)
        except SourceTooLong as err:
            raise HTTPException(422, f"text: {err}") from None
        except QueueFull as err:
            raise HTTPException(503, str(err), headers={"Retry-After": str(RETRY_AFTER_S)}) from None
        payload = await asyncio.to_thread(render, results, body.attention, cfg.max_attention_cells,
                                          translator if body.layers else None)
        return Response(payload, media_type="application/json")

    return translate


def _limits(main: Model, cfg: ServeConfig) -> dict:
    """The bounds on a client's work that /info reports."""
    return {"max_sentences": cfg.max_sentences, "max_chars": cfg.max_chars, "max_beam": cfg.max_beam,
            "max_src_len": main.translator.max_src_len, "max_src_len_policy": cfg.max_src_len_policy,
            "max_body_bytes": cfg.body_limit, "max_queue": cfg.max_queue,
            "request_timeout_s": cfg.request_timeout_s, "max_attention_cells": cfg.max_attention_cells}


def _add_error_handlers(app: FastAPI, cfg: ServeConfig) -> None:
    """Every error answer is JSON with one ``error`` message."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = err.errors()
        message = "; ".join(_describe(e, cfg) for e in errors[:5])
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in errors]
        malformed = any(e.get("type") == "json_invalid" for e in errors)  # not JSON at all: 400
        return JSONResponse({"error": message, "detail": detail}, status_code=400 if malformed else 422)

    @app.exception_handler(Seq2SeqError)
    async def refused(request: Request, err: Seq2SeqError) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(err.detail)}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(Exception)
    async def crashed(request: Request, err: Exception) -> JSONResponse:
        log.error("%s %s failed: %r", request.method, request.url.path, err)
        return JSONResponse({"error": "internal error; the server log says more"}, status_code=500)


def _describe(error: dict, cfg: ServeConfig) -> str:
    """One pydantic error as a sentence that names the field and, for a limit, the setting behind it."""
    kind = error.get("type", "")
    loc = [str(x) for x in error.get("loc", ()) if x != "body"]
    where = ".".join(loc) or "body"
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        return f"malformed JSON ({reason}); send an object like {{\"text\": [\"A sentence.\"]}}"
    if kind == "extra_forbidden":
        return f"{where}: unknown field; the fields are text, beam_size, nbest, alpha, attention, layers, model"
    if kind == "missing" and where == "body":
        return "no request body; send a JSON object like {\"text\": [\"A sentence.\"]}"
    if kind in ("model_attributes_type", "dict_type"):
        return (f"{where}: expected a JSON object (with Content-Type: application/json) like "
                "{\"text\": [\"A sentence.\"]}")
    hints = {("text", "too_long"): f" (the server's max_sentences={cfg.max_sentences})",
             ("text", "too_short"): " (send at least one sentence)",
             ("text", "string_too_long"): f" (the server's max_chars={cfg.max_chars}); shorten or split it",
             ("beam_size", "less_than_equal"): f" (the server's max_beam={cfg.max_beam})",
             ("nbest", "less_than_equal"): f" (the server's max_beam={cfg.max_beam})"}
    return f"{where}: {error.get('msg', 'invalid')}{hints.get((loc[0] if loc else '', kind), '')}"


def serve(cfg: ServeConfig) -> None:
    """Load the model(s) once, then serve until Ctrl-C or SIGTERM (which finish the requests in flight)."""
    import uvicorn

    models = [load("main", cfg.checkpoint, cfg)]
    if cfg.compare is not None:
        models.append(load("compare", cfg.compare, cfg))
    app = create_app(models, cfg)
    # log_config=None: uvicorn's loggers go through the command's own logging (stderr)
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_config=None,
                                           access_log=False, timeout_graceful_shutdown=30))
    server.run()


def main(cfg: ServeConfig) -> None:
    """seq2seq-serve: serve until Ctrl-C or SIGTERM, which end it cleanly (status 0 for SIGTERM)."""
    import signal
    import sys

    # uvicorn stops gracefully on SIGTERM, then raises it again: end with status 0 instead of being killed
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    serve(cfg)
