"""Face check timings on this machine, single thread; prints two tables.

1:1 — time per probe for detect + encode + compare, on a kiosk-sized frame against an
enrolled template and against a card photo (which must be encoded too).
1:N — exact search time per query over 10k, 100k and 1M random unit templates: numpy,
faiss IndexFlatIP and the fp16- and 8-bit-shortlist engines side by side, with the time
to load the gallery, whether each returns the numpy engine's answers, and how many
searches of a shortlist engine could not be proved from the shortlist (fp16: then a
float32 scan; sq8: then a longer 8-bit shortlist, and if that is not enough either a
float32 scan, counted after the "/").

Accuracy — genuine/impostor distances on the faces shipped in packages, with false
accepts and false rejects per threshold (the configured ones marked).

Goals: 1:1 <= 250 ms; 1:N at 1M <= 25 ms per query; no false accept at the configured
thresholds on the test pairs.

    .venv/bin/python benchmarks/bench_face.py [--sizes 10000,100000,1000000] [--probes 20]
        [--crowded 1000000]

Crowded (``--crowded N``) — the cost of a search whose shortlist cannot be proved:
groups of 300, 2,000 and 20,000 templates 0.001 apart planted among N, queried at
their centres, for numpy and the two shortlist engines.

The photos are real faces shipped in installed packages (scikit-image's astronaut,
matplotlib's Grace Hopper); see tests/face/sample_faces.py for their provenance.
"""

from __future__ import annotations

import os

# Single thread, set before numpy and faiss load their thread pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import io  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from importlib.metadata import distribution  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from hcmiddleware.face.gallery import Engine, FaceGallery  # noqa: E402
from hcmiddleware.face.quality import check_photo  # noqa: E402
from hcmiddleware.face.verify import FaceService  # noqa: E402


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _photos() -> dict[str, bytes]:
    from skimage import data

    hopper = Image.open(
        str(
            distribution("matplotlib").locate_file(
                "matplotlib/mpl-data/sample_data/grace_hopper.jpg"
            )
        )
    ).convert("RGB")
    astronaut = Image.fromarray(np.asarray(data.astronaut())).crop((120, 0, 330, 260))
    # A kiosk camera frame: the portrait centred in 640×480.
    frame = Image.new("RGB", (640, 480), (90, 90, 90))
    frame.paste(hopper.resize((390, 458)), (125, 11))
    return {
        "frame_640x480": _jpeg(frame),
        "frame_1920x1440": _jpeg(frame.resize((1920, 1440), Image.Resampling.BICUBIC)),
        "card_100x125": _jpeg(hopper.crop((60, 40, 460, 540)).resize((100, 125)), 60),
        "other_person": _jpeg(astronaut),
    }


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def _timed(fn: Callable[[], object], n: int) -> list[float]:
    fn()  # warm-up: model load, caches
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def bench_verify(probes: int) -> None:
    service = FaceService()
    # The card-photo column measures a first check (the reference encoded too), not a
    # retake served from the reference cache.
    uncached = FaceService(backend=service.backend, reference_cache=0)
    photos = _photos()
    enrolled = service.encode(photos["card_100x125"])
    rows = []
    for name in ("frame_640x480", "frame_1920x1440", "card_100x125"):
        data = photos[name]
        face = check_photo(data, service.backend, service.settings, role="live")
        gate = _timed(
            lambda data=data: check_photo(data, service.backend, service.settings, role="live"),
            probes,
        )
        enc = _timed(lambda face=face: service.backend.encode(face.photo.image, face.box), probes)
        probe = service.backend.encode(face.photo.image, face.box)
        cmp_ = _timed(lambda probe=probe: service.backend.compare(probe, enrolled), probes)
        vs_tpl = _timed(lambda data=data: service.verify_template(data, enrolled), probes)
        vs_card = _timed(lambda data=data: uncached.verify(data, photos["card_100x125"]), probes)
        rows.append((name, gate, enc, cmp_, vs_tpl, vs_card))
    print(f"\n1:1 verification, backend {service.backend.name}, {probes} probes, ms median/p95")
    head = (
        f"{'probe':<17}{'decode+detect':>16}{'encode':>14}{'compare':>12}"
        f"{'vs template':>16}{'vs card photo':>16}"
    )
    print(head)
    print("-" * len(head))
    for name, *cols in rows:
        cells = "".join(
            f"{'{:.1f}/{:.1f}'.format(*_ms(c)):>{w}}"
            for c, w in zip(cols, (16, 14, 12, 16, 16), strict=True)
        )
        print(f"{name:<17}{cells}")
    answer = service.verify(photos["other_person"], photos["card_100x125"])
    print(f"(sanity: another person vs the card photo -> {answer.status}, d={answer.distance:.3f})")


def bench_accuracy() -> None:
    """Genuine and impostor distances on the package faces, FAR/FRR per threshold."""
    import itertools
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "face"))
    import sample_faces as faces

    from hcmiddleware.errors import UnusablePhotoError

    service = FaceService()
    templates: dict[tuple[str, str], np.ndarray] = {}
    unusable = 0
    for name, img in faces.load_people().items():
        variants = {"orig": faces.to_jpeg(img), "card": faces.card_photo(img)}
        variants |= {a: faces.to_jpeg(f(img)) for a, f in faces.AUGMENTATIONS.items()}
        for variant, data in variants.items():
            try:
                templates[name, variant] = service.encode(data)
            except UnusablePhotoError:
                unusable += 1
    genuine, impostor = [], []
    for a, b in itertools.combinations(templates, 2):
        d = service.backend.compare(templates[a], templates[b])
        (genuine if a[0] == b[0] else impostor).append(d)
    g, i = np.array(genuine), np.array(impostor)
    print(
        f"\naccuracy on package faces: {len({k[0] for k in templates})} people, "
        f"{len(templates)} photos ({unusable} unusable), {len(g)} genuine and "
        f"{len(i)} impostor pairs"
    )
    print(f"genuine distance {g.min():.3f}-{g.max():.3f}, impostor {i.min():.3f}-{i.max():.3f}")
    t = service.settings.thresholds
    configured = {t.enrolled: "enrolled", t.card_photo: "card_photo", t.duplicate: "duplicate"}
    print(f"{'threshold':>10}{'false accepts':>15}{'false rejects':>15}")
    for th in sorted({*np.round(np.arange(0.26, 0.44, 0.02), 2).tolist(), *configured}):
        fa, fr = int((i <= th).sum()), int((g > th).sum())
        label = f"  <- {configured[th]}" if th in configured else ""
        print(f"{th:>10.2f}{fa:>9} ({fa / len(i):.2%}){fr:>9} ({fr / len(g):.2%}){label}")


def bench_store_load(rows: int) -> None:
    """Start-up: the gallery loaded from the encrypted store (SQLite file, AES-GCM)."""
    import sys
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "face"))
    from aesgcm_cipher import AesGcmCipher

    from hcmiddleware.face.store import FaceTemplateRow, TemplateStore
    from hcmiddleware.storage import Base, create_engine

    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/faces.db")
        Base.metadata.create_all(engine, tables=[FaceTemplateRow.__table__])  # type: ignore[list-item]
        cipher = AesGcmCipher()
        matrix = np.random.default_rng(1).standard_normal((rows, 128), dtype=np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        store = TemplateStore(engine, cipher, key_id="k1", backend="dlib", dimension=128)
        t = time.perf_counter()
        store.save_many((f"R{i:07d}", matrix[i]) for i in range(rows))
        written = time.perf_counter() - t
        t = time.perf_counter()
        gallery = FaceGallery.from_templates(store.iter_templates(), dimension=128)
        loaded = time.perf_counter() - t
        engine.dispose()
    print(
        f"\nstore: {rows} encrypted templates written in {written:.2f} s (save_many), "
        f"gallery loaded from them in {loaded:.2f} s ({loaded / rows * 1e6:.0f} µs a template, "
        f"{len(gallery)} in the gallery)"
    )


def bench_search(sizes: list[int], queries: int) -> None:
    try:
        import faiss

        faiss.omp_set_num_threads(1)
        threads = f", faiss threads {faiss.omp_get_max_threads()}"
        engines: list[Engine] = ["numpy", "faiss", "faiss-fp16", "faiss-sq8"]
    except ImportError:
        print("faiss not installed: numpy only")
        threads = ""
        engines = ["numpy"]
    rng = np.random.default_rng(0)
    print(
        f"\n1:N exact search, 128-d, top-5, single thread{threads}, {queries} queries "
        f"(load average {os.getloadavg()[0]:.2f} at the start)"
    )
    head = (
        f"{'templates':>10}  {'engine':<11}{'load s':>8}{'median ms':>11}{'p95 ms':>9}"
        f"{'same as numpy':>15}{'fallbacks':>11}"
    )
    print(head)
    print("-" * len(head))
    for n in sizes:
        matrix = rng.standard_normal((n, 128), dtype=np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        ids = [f"R{i:07d}" for i in range(n)]
        qs = rng.standard_normal((queries, 128), dtype=np.float32)
        qs /= np.linalg.norm(qs, axis=1, keepdims=True)
        # Half the probes near an enrolled face, as at enrolment of a returning resident.
        near = matrix[rng.integers(0, n, queries // 2)] + 0.02 * qs[: queries // 2]
        qs[: queries // 2] = near
        reference: list[list[str]] = []
        for engine in engines:
            t = time.perf_counter()
            gallery = FaceGallery(128, engine=engine)
            gallery.add_many(ids, matrix)
            load = time.perf_counter() - t
            gallery.search(qs[-1], top=5)  # warm-up
            times = []
            answers = []
            for q in qs:
                t = time.perf_counter()
                hits = gallery.search(q, top=5)
                times.append(time.perf_counter() - t)
                answers.append([h.resident_id for h in hits])
            if engine == "numpy":
                reference = answers
            med, p95 = _ms(times)
            same = "yes" if answers == reference else "NO"
            fallbacks = getattr(gallery._rows, "fallbacks", None)
            full = getattr(gallery._rows, "full_scans", None)
            shown = "-" if fallbacks is None else str(fallbacks)
            shown += "" if full is None else f"/{full}"
            print(f"{n:>10}  {engine:<11}{load:>8.2f}{med:>11.2f}{p95:>9.2f}{same:>15}{shown:>11}")
            del gallery
        del matrix


def bench_crowded(n: int, reps: int) -> None:
    """What a search costs when a shortlist cannot be proved: groups of templates 0.001
    apart (far closer than two photos of one face) planted in n random ones, each group
    queried at its centre."""
    try:
        import faiss

        faiss.omp_set_num_threads(1)
    except ImportError:
        print("faiss not installed: no shortlist engines to measure")
        return
    rng = np.random.default_rng(2)
    matrix = rng.standard_normal((n, 128), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    centres = {}
    at = 0
    for size in (300, 2000, 20000):
        centre = matrix[at].copy()
        group = centre + 1e-3 * rng.standard_normal((size, 128), dtype=np.float32)
        matrix[at + 1 : at + 1 + size] = group / np.linalg.norm(group, axis=1, keepdims=True)
        centres[size] = centre
        at += size + 1
    ids = [f"R{i:07d}" for i in range(n)]
    print(
        f"\n1:N in a crowded gallery of {n} templates, top-5, ms median of {reps} queries "
        f"(load average {os.getloadavg()[0]:.2f} at the start)"
    )
    head = f"{'group':>7}  {'engine':<11}{'median ms':>11}{'same as numpy':>15}{'fallbacks':>11}"
    print(head)
    print("-" * len(head))
    engines: list[Engine] = ["numpy", "faiss-fp16", "faiss-sq8"]
    reference: dict[int, list[str]] = {}
    for engine in engines:
        gallery = FaceGallery(128, engine=engine)
        gallery.add_many(ids, matrix)
        for size, centre in centres.items():
            answer = [h.resident_id for h in gallery.search(centre, top=5)]  # warm-up
            rows = gallery._rows
            before = getattr(rows, "fallbacks", 0), getattr(rows, "full_scans", None)
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                gallery.search(centre, top=5)
                times.append(time.perf_counter() - t)
            reference.setdefault(size, answer)
            same = "yes" if answer == reference[size] else "NO"
            shown = "-"
            if hasattr(rows, "fallbacks"):
                shown = str(rows.fallbacks - before[0])
                if before[1] is not None:
                    shown += f"/{rows.full_scans - before[1]}"
            med = statistics.median(times) * 1000
            print(f"{size:>7}  {engine:<11}{med:>11.2f}{same:>15}{shown:>11}")
        del gallery


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--skip-verify", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--store-rows", type=int, default=50_000, help="0 to skip")
    parser.add_argument(
        "--crowded",
        type=int,
        default=0,
        metavar="N",
        help="also time searches at planted groups of near-identical templates in a "
        "gallery of N (the shortlist engines' fallbacks); 0 to skip",
    )
    args = parser.parse_args()
    if not args.skip_verify:
        bench_verify(args.probes)
    if not args.skip_accuracy:
        bench_accuracy()
    if args.store_rows:
        bench_store_load(args.store_rows)
    if not args.skip_search:
        bench_search([int(s) for s in args.sizes.split(",")], args.queries)
    if args.crowded:
        bench_crowded(args.crowded, 10)


if __name__ == "__main__":
    main()
