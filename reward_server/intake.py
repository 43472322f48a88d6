"""Request bodies to ScoreItems: JSON (base64 images), multipart uploads and binary safetensors batches.

Every field, encoding and header is checked before any pixel is decoded: image headers are read
first and the request's decoded pixels are budgeted (`max_request_pixels`), so a small body of
highly compressed images cannot make the service allocate gigabytes.
"""

from __future__ import annotations

import torch
from PIL import Image
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from irpo_common.imaging import ImageError, base64_bytes, load_pixels, open_image
from irpo_common.json_input import BadJSON, loads, validation_detail
from reward_server.config import RewardSettings
from reward_server.schemas import ItemOptions, ScoreRequest
from reward_server.scorer import InvalidItemError, ScoreItem, make_item
from reward_server.wire import decode_batch

IMAGE_FIELDS = ("restored", "reference", "degraded")
_OPTION_FIELDS = tuple(ItemOptions.model_fields)


def _short(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, d['loc'])) or 'value'}: {d['msg']}" for d in validation_detail(exc))


class Intake:
    def __init__(self, settings: RewardSettings):
        self.settings = settings

    def item(self, images: dict[str, torch.Tensor], opts: ItemOptions, label: str = "") -> ScoreItem:
        try:
            weights = self.settings.weights.override(opts.weights)
        except ValidationError as exc:
            raise InvalidItemError(f"{label}weights: {_short(exc)}") from None
        except ValueError as exc:
            raise InvalidItemError(f"{label}{exc}") from None
        return make_item(
            images["restored"], images.get("reference"), images.get("degraded"),
            task=opts.task, weights=weights, judge=opts.judge, settings=self.settings, label=label,
        )

    def _open_all(self, raw: list[dict[str, bytes]], labels: list[str]) -> list[dict[str, Image.Image]]:
        """Read every image header and budget the request's decoded pixels before decoding any."""
        opened, total = [], 0
        for images, label in zip(raw, labels):
            heads = {f: open_image(data, field=f"{label}{f}", max_pixels=self.settings.max_pixels) for f, data in images.items()}
            total += sum(img.width * img.height for img in heads.values())
            opened.append(heads)
        if total > self.settings.max_request_pixels:
            raise ImageError(f"the request's images hold {total} pixels, over the budget of {self.settings.max_request_pixels} "
                             "per request; send fewer or smaller images per request")
        return opened

    def _decode(self, raw: list[dict[str, bytes]], options: list[ItemOptions], labels: list[str]) -> list[ScoreItem]:
        items = []
        for heads, opts, label in zip(self._open_all(raw, labels), options, labels):
            tensors = {f: torch.from_numpy(load_pixels(img, field=f"{label}{f}")).permute(2, 0, 1) for f, img in heads.items()}
            items.append(self.item(tensors, opts, label))
        return items

    def json_items(self, reqs: list[ScoreRequest], labels: list[str]) -> list[ScoreItem]:
        raw = [{f: base64_bytes(getattr(r, f), field=f"{label}{f}") for f in IMAGE_FIELDS if getattr(r, f) is not None}
               for r, label in zip(reqs, labels)]
        return self._decode(raw, reqs, labels)

    async def multipart_form(self, request: Request) -> tuple[dict[str, bytes], ItemOptions]:
        """The raw images and the options of a multipart item; empty option fields mean null."""
        form = await request.form(max_files=len(IMAGE_FIELDS), max_fields=len(IMAGE_FIELDS) + len(_OPTION_FIELDS))
        raw_images: dict[str, bytes] = {}
        options: dict[str, object] = {}
        for key, value in form.multi_items():
            if key in raw_images or key in options:
                raise InvalidItemError(f"{key[:40]}: given more than once")
            if key in IMAGE_FIELDS:
                raw_images[key] = await value.read() if isinstance(value, UploadFile) else base64_bytes(value, field=key)
            elif isinstance(value, str):
                options[key] = value or None
            else:
                raise InvalidItemError(f"{key[:40]}: unexpected file upload; files go in {list(IMAGE_FIELDS)}")
        if "restored" not in raw_images:
            raise InvalidItemError("restored: required (multipart field `restored`)")
        if options.get("weights") is not None:
            try:
                options["weights"] = loads(options["weights"], field="weights")
            except BadJSON as exc:
                raise InvalidItemError(f"{exc} (send e.g. weights='{{\"psnr\": 0.3}}')") from None
        return raw_images, ItemOptions.model_validate(options)

    def multipart_item(self, raw_images: dict[str, bytes], opts: ItemOptions) -> ScoreItem:
        return self._decode([raw_images], [opts], [""])[0]

    def binary_items(self, body: bytes) -> list[ScoreItem]:
        st = self.settings
        tensors, options = decode_batch(body, max_items=st.max_batch_items, max_pixels=st.max_pixels,
                                        max_request_pixels=st.max_request_pixels)
        items = []
        for i, raw in enumerate(options):
            label = f"items[{i}]."
            try:
                opts = ItemOptions.model_validate(raw)
            except ValidationError as exc:
                raise InvalidItemError(f"{label}{_short(exc)}") from None
            items.append(self.item({k: t[i] for k, t in tensors.items()}, opts, label))
        return items
