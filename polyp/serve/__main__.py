"""`python -m polyp.serve --model DIR [--host 127.0.0.1] [--port 8000] [--examples DIR|synthetic]`."""

from __future__ import annotations

import argparse
import ipaddress
import sys

import uvicorn

from polyp.data import resolve_data_dir
from polyp.errors import PolypError
from polyp.predict import Predictor, add_runtime_option
from polyp.serve.app import DEFAULT_MAX_UPLOAD_BYTES, create_app
from polyp.serve.examples import MAX_EXAMPLES, list_examples


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of the server."""
    parser = argparse.ArgumentParser(prog="python -m polyp.serve",
                                     description="Serve a web page and POST /predict over an exported checkpoint.")
    parser.add_argument("--model", required=True, help="checkpoint folder (config.json + model.safetensors + training.json)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--examples", help=f"folder of example JPEG/PNG images, a data folder with images/, or "
                                           f"'synthetic' (the generated set, as for --data); the first "
                                           f"{MAX_EXAMPLES} by name are offered")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_BYTES / 2**20,
                        help="largest accepted upload in MiB (default 10)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    add_runtime_option(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        predictor, info = Predictor.from_folder(args.model, args.device, runtime=args.runtime)
        examples = list_examples(resolve_data_dir(args.examples) if args.examples else None)
    except PolypError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not _is_loopback(args.host):
        print(f"note: listening on {args.host}, reachable from other machines; the page has no login", file=sys.stderr)
    app = create_app(predictor, info, examples, max_upload_bytes=int(args.max_upload_mb * 2**20))
    if predictor.runtime_note:
        print(predictor.runtime_note)
    print(f"model {info.config.arch}/{info.config.encoder} at {info.image_size} px ({predictor.runtime}), "
          f"{len(examples)} example(s); "
          f"open http://{f'[{args.host}]' if ':' in args.host else args.host}:{args.port}/")
    uvicorn.run(app, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
