"""permessage-deflate (RFC 7692) with memory bounded per connection.

The websockets library's extension allocates its zlib streams when the connection opens:
about 40 KiB per connection at the settings below, most of it the compressor, whether the
connection ever carries a message or not. Here they are made on first use, and a stream
whose context is not taken over is dropped after each message, so an idle WebSocket holds no
zlib state. Inflating is bounded by --ws-max-size (the library's ``max_size``).
"""
from __future__ import annotations

import zlib
from typing import Any, Sequence

from websockets.extensions import Extension
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.frames import Frame

# uvicorn's choice too: 4 KiB windows and a small hash table cost little ratio on chat-sized
# messages and a quarter of zlib's default memory.
WINDOW_BITS = 12
COMPRESS_SETTINGS = {"memLevel": 5}


class LazyDeflate(PerMessageDeflate):
    """PerMessageDeflate whose zlib streams exist only while they hold context."""

    def __init__(self, template: PerMessageDeflate) -> None:
        # The negotiated parameters, without the eager zlib streams of the parent's __init__.
        self.remote_no_context_takeover = template.remote_no_context_takeover
        self.local_no_context_takeover = template.local_no_context_takeover
        self.remote_max_window_bits = template.remote_max_window_bits
        self.local_max_window_bits = template.local_max_window_bits
        self.compress_settings = template.compress_settings
        self.decode_cont_data = False

    def __getattr__(self, name: str) -> Any:
        # Only reached when the attribute is missing: make the stream on first use.
        if name == "decoder":
            self.decoder = zlib.decompressobj(wbits=-self.remote_max_window_bits)
            return self.decoder
        if name == "encoder":
            self.encoder = zlib.compressobj(wbits=-self.local_max_window_bits, **self.compress_settings)
            return self.encoder
        raise AttributeError(name)

    def encode(self, frame: Frame) -> Frame:
        encoded = super().encode(frame)
        if frame.fin and self.local_no_context_takeover and "encoder" in self.__dict__:
            del self.encoder
        return encoded


class LazyDeflateFactory(ServerPerMessageDeflateFactory):
    def process_request_params(
        self, params: Sequence[tuple[str, str | None]], accepted_extensions: Sequence[Extension]
    ) -> tuple[list[tuple[str, str | None]], PerMessageDeflate]:
        response, extension = super().process_request_params(params, accepted_extensions)
        return response, LazyDeflate(extension)


def deflate_factory() -> ServerPerMessageDeflateFactory:
    return LazyDeflateFactory(
        server_max_window_bits=WINDOW_BITS, client_max_window_bits=WINDOW_BITS,
        compress_settings=dict(COMPRESS_SETTINGS),
    )
