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

Kiosk set — the face set of hcmiddleware.face.kiosk_set (card photos of 102×126 in at
most 3 KB, live 640×480 frames with faces of 38–110 px: clean, dark, blurred, low
contrast, turned ±15°, JPEG quality 12): unusable rate, false accepts, false rejects and
1:1 time per cascade tier (and of the live photo alone: a check against a template,
or against a card photo encoded when the card was read), for the configured cascade,
the cascade without its fallback (HOG tiers only), and face_recognition's own defaults
(HOG upsampled once, tolerance 0.6) in the same run; then the advice an unusable live
photo would get, per condition. Times are wall-clock and, beside them, the process's
CPU time: every step is single-threaded, so on a machine shared with other work the CPU
time is close to what the check costs on an idle core. These 1:1 times are the two
photos' times summed (checked in turn). Then 1:1 as the kiosk calls it:
``FaceService.verify`` on every genuine pair (``--pairs N``: about N of them), with the card
photo checked in the helper process meanwhile (the default), in turn, and against the
card photo's template encoded ahead, side by side (see ``bench_kiosk_verify``).

Breakdown (``--breakdown``, alone) — the CPU time of every step of a first check (decode,
each detector tier, landmarks, the ResNet descriptor) for the live and the card photo,
per tier, median / p95.

Detectors (``--detectors``) — HOG, HOG upsampled once, BlazeFace and dlib's CNN (on
the photo scaled to 320 px) each alone on the kiosk set: faces found where they are,
false finds, and time per photo: the comparison behind the cascade's default fallback;
then dlib's CNN on the card photos at several sizes (the smallest that finds them all).

Goals: 1:1 <= 250 ms (against a card photo, the fallback included); 1:N at 1M <= 25 ms
per query; on the kiosk set: unusable <= 5 %, no false accept, false rejects <= 2 %.

    .venv/bin/python benchmarks/bench_face.py [--sizes 10000,100000,1000000] [--probes 20]
        [--crowded 1000000] [--skip-kiosk] [--kiosk-only] [--pairs N] [--detectors]
        [--breakdown]

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


def _pct(part: int, whole: int) -> str:
    return f"{part} ({part / whole:.1%})" if whole else "0"


def _kiosk_run(name: str, kiosk: object, check: Callable[[bytes, str], object]) -> dict:
    """Run ``check(photo, role)`` -> (template | reason, tier, seconds) over the set."""
    from hcmiddleware.face.kiosk_set import KioskSet

    assert isinstance(kiosk, KioskSet)
    cards = {}
    for owner, data in kiosk.cards.items():
        cards[owner] = check(data, "reference")
    live = {photo.key: check(photo.data, "live") for photo in kiosk.live}
    return {"name": name, "cards": cards, "live": live}


def bench_kiosk(pairs: int = 0) -> None:
    """The kiosk set through three pipelines, side by side (see the module's docstring)."""
    import face_recognition as fr

    from hcmiddleware.errors import UnusablePhotoError
    from hcmiddleware.face.advice import advice_for, measure_photo
    from hcmiddleware.face.detectors import load_fallback
    from hcmiddleware.face.image import decode_photo
    from hcmiddleware.face.kiosk_set import CONDITIONS, FACE_SIZES, build_kiosk_set
    from hcmiddleware.face.settings import FaceDetection, FaceSettings

    t = time.perf_counter()
    kiosk = build_kiosk_set()
    built = time.perf_counter() - t
    genuine = list(kiosk.genuine())
    impostor = list(kiosk.impostor())
    print(
        f"\nkiosk set: {len(kiosk.cards)} card photos "
        f"({min(map(len, kiosk.cards.values()))}-{max(map(len, kiosk.cards.values()))} bytes), "
        f"{len(kiosk.live)} live frames, {len(genuine)} genuine and {len(impostor)} impostor "
        f"pairs (built in {built:.1f} s; load average {os.getloadavg()[0]:.2f})"
    )

    def ours(settings: FaceSettings) -> Callable[[bytes, str], object]:
        service = FaceService(settings, reference_cache=0)
        service.encode(kiosk.cards[next(iter(kiosk.cards))])  # warm-up: models load

        def check(data: bytes, role: str) -> object:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                face = check_photo(data, service.backend, service.settings, role=role)
                tpl = service.backend.encode(face.photo.image, face.box)
            except UnusablePhotoError as exc:
                took = (time.perf_counter() - t0, time.process_time() - c0)
                return exc.reason, "-", took, exc.advice
            return tpl, face.detector, (time.perf_counter() - t0, time.process_time() - c0), None

        return check

    def fr_default(data: bytes, role: str) -> object:
        t0, c0 = time.perf_counter(), time.process_time()
        img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        boxes = fr.face_locations(img)  # HOG, upsampled once
        if not boxes:
            took = (time.perf_counter() - t0, time.process_time() - c0)
            return "no_face", "-", took, None
        tpl = fr.face_encodings(img, boxes[:1])[0]  # the first face, as its examples do
        return tpl, "hog-upsampled", (time.perf_counter() - t0, time.process_time() - c0), None

    configured = FaceSettings()
    hog_only = FaceSettings(detection=FaceDetection(fallback="none"))
    runs = [
        (_kiosk_run("hcmiddleware (configured)", kiosk, ours(configured)), configured, False),
        (_kiosk_run("hcmiddleware, no fallback", kiosk, ours(hog_only)), hog_only, False),
        (_kiosk_run("face_recognition defaults", kiosk, fr_default), None, True),
    ]
    print(
        f"\n{'pipeline':<28}{'unusable':>14}{'false accepts':>20}{'false rejects':>16}"
        f"{'in turn p50/p95':>17}{'CPU ms':>12}"
    )
    per_tier_lines = []
    for run, settings, raw in runs:
        threshold = 0.6 if raw else settings.thresholds.card_photo
        unusable = 0
        fr_count = 0
        usable_genuine = 0
        times: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        live_cpu: dict[str, list[float]] = {}
        tier_fr: dict[str, list[int]] = {}
        reasons: dict[str, int] = {}
        for photo, owner in genuine:
            lv, ltier, lsec, _ = run["live"][photo.key]
            cd, ctier, csec, _ = run["cards"][owner]
            total = lsec[0] + csec[0]
            total_cpu = lsec[1] + csec[1]
            if isinstance(lv, str) or isinstance(cd, str):
                unusable += 1
                why = f"live {lv}" if isinstance(lv, str) else f"card {cd}"
                reasons[why] = reasons.get(why, 0) + 1
                times.setdefault("unusable", []).append(total)
                cpu.setdefault("unusable", []).append(total_cpu)
                continue
            usable_genuine += 1
            d = float(np.linalg.norm(np.asarray(lv) - np.asarray(cd)))
            if not raw:
                d = float(np.linalg.norm(lv - cd))
            tier = f"{ltier} / {ctier}"
            times.setdefault(tier, []).append(total)
            cpu.setdefault(tier, []).append(total_cpu)
            live_cpu.setdefault(tier, []).append(lsec[1])
            counts = tier_fr.setdefault(tier, [0, 0])
            counts[0] += 1
            if d > threshold:
                fr_count += 1
                counts[1] += 1
        fa = 0
        usable_impostor = 0
        for photo, owner in impostor:
            lv = run["live"][photo.key][0]
            cd = run["cards"][owner][0]
            if isinstance(lv, str) or isinstance(cd, str):
                continue
            usable_impostor += 1
            if float(np.linalg.norm(np.asarray(lv) - np.asarray(cd))) <= threshold:
                fa += 1
        every = [x for v in times.values() for x in v if v]
        usable_times = [x for k, v in times.items() if k != "unusable" for x in v]
        usable_cpu = [x for k, v in cpu.items() if k != "unusable" for x in v]
        p = "{:.0f}/{:.0f}".format(*_ms(usable_times)) if usable_times else "-"
        pc = "{:.0f}/{:.0f}".format(*_ms(usable_cpu)) if usable_cpu else "-"
        print(
            f"{run['name']:<28}{_pct(unusable, len(genuine)):>14}"
            f"{_pct(fa, usable_impostor):>20}{_pct(fr_count, usable_genuine):>16}{p:>17}"
            f"{pc:>12}"
        )
        per_tier_lines.append(f"\n{run['name']}: threshold {threshold}, {len(every)} checks")
        for tier, vals in sorted(times.items()):
            med, p95 = _ms(vals)
            cmed, cp95 = _ms(cpu[tier])
            extra = ""
            if tier in tier_fr:
                extra = ", live alone CPU {:.0f} / {:.0f}".format(*_ms(live_cpu[tier]))
                extra += f", false rejects {tier_fr[tier][1]}"
            per_tier_lines.append(
                f"  live / card tier {tier:<28} n={len(vals):>4}  "
                f"1:1 {med:4.0f} / {p95:4.0f} ms (CPU {cmed:4.0f} / {cp95:4.0f}){extra}"
            )
        if reasons:
            per_tier_lines.append(
                "  unusable: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
            )
        by_cond = {
            c: sum(
                1
                for ph in kiosk.live
                if ph.condition == c and isinstance(run["live"][ph.key][0], str)
            )
            for c in CONDITIONS
        }
        by_size = {
            s_: sum(
                1
                for ph in kiosk.live
                if ph.face_px == s_ and isinstance(run["live"][ph.key][0], str)
            )
            for s_ in FACE_SIZES
        }
        per_tier_lines.append(
            "  unusable live frames by condition: "
            + ", ".join(f"{k} {v}" for k, v in by_cond.items())
            + "; by face size: "
            + ", ".join(f"{k} px {v}" for k, v in by_size.items())
        )
    print("\n".join(per_tier_lines))
    first = runs[0][0]
    bench_kiosk_verify(kiosk, first, pairs)
    advised: dict[str, dict[str, int]] = {}
    for ph in kiosk.live:
        advice = first["live"][ph.key][3]
        if advice:
            row = advised.setdefault(ph.condition, {})
            row[advice["code"]] = row.get(advice["code"], 0) + 1
    print("\nadvice given for the unusable live frames (configured), by condition:")
    for cond, row in advised.items():
        print(f"  {cond:<14}" + ", ".join(f"{k} {v}" for k, v in sorted(row.items())))
    # The same measures on every frame, as if no face had been found: which advice each
    # condition would get (the weak BlazeFace guess placing the region, as in the gate).
    blaze = load_fallback("blazeface")
    print("\nadvice if no face had been found, every live frame, by condition:")
    for cond in CONDITIONS:
        row = {}
        for ph in kiosk.live:
            if ph.condition != cond:
                continue
            img = decode_photo(ph.data, photo="live", max_side=800, max_pixels=10**8).image
            guesses = blaze.detect(img, min_score=0.15) if blaze else []
            best = max(guesses, key=lambda c: c.score) if guesses else None
            m = measure_photo(img, best.box if best else None, best.keypoints if best else ())
            code = advice_for("no_face", "live", m).code
            row[code] = row.get(code, 0) + 1
        print(f"  {cond:<14}" + ", ".join(f"{k} {v}" for k, v in sorted(row.items())))


def bench_kiosk_verify(kiosk: object, checked: dict | None, limit: int = 0) -> None:
    """1:1 as a kiosk makes it: ``FaceService.verify`` on every genuine pair, against a
    card photo it has not seen (no reference cache), with the helper process checking
    the card photo meanwhile (the default), in turn (``reference_worker = false``), and
    against the card photo's template encoded when the card was read
    (``verify_template``), one after the other for each pair so that the machine's load
    falls on all three alike. Besides wall time: this process's CPU time and the
    helper's; the longer of the two is what the check takes when each has a core.
    ``checked`` is the configured pipeline's per-photo run: its verdicts must be these
    (None: not compared)."""
    from hcmiddleware.face.kiosk_set import KioskSet
    from hcmiddleware.face.settings import FaceSettings
    from hcmiddleware.face.worker import ReferenceWorker

    assert isinstance(kiosk, KioskSet)
    helper = ReferenceWorker()
    t = time.perf_counter()
    if not helper.wait_ready(300):
        print("\nthe face worker did not start: no 1:1 figures")
        return
    started = time.perf_counter() - t
    parallel = FaceService(reference_cache=0, worker=helper)
    in_turn = FaceService(
        FaceSettings(reference_worker=False), backend=parallel.backend, reference_cache=0
    )
    ahead = {owner: in_turn.encode(card, role="reference") for owner, card in kiosk.cards.items()}
    pairs = list(kiosk.genuine())
    if limit:
        pairs = pairs[:: max(1, -(-len(pairs) // limit))]  # spread over people and sizes
    first_live, first_owner = pairs[0]
    parallel.verify(first_live.data, kiosk.cards[first_owner])  # warm-up
    modes = ("helper process (default)", "in turn (reference_worker = false)", "card encoded ahead")
    rows: dict[str, list[tuple[float, float, float, str, str]]] = {m: [] for m in modes}
    differ = 0
    unlike_checked = 0
    load = [os.getloadavg()[0]]
    for photo, owner in pairs:
        card = kiosk.cards[owner]
        answers = []
        for mode in modes:
            helper.last_cpu = 0.0
            t0, c0 = time.perf_counter(), time.process_time()
            if mode == modes[0]:
                answer = parallel.verify(photo.data, card)
            elif mode == modes[1]:
                answer = in_turn.verify(photo.data, card)
            else:
                answer = in_turn.verify_template(photo.data, ahead[owner], source="card_photo")
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            tier = f"{answer.detector} / {answer.reference_detector or 'ahead'}"
            if answer.status == "unusable":
                tier = "unusable"
            rows[mode].append((wall, cpu, helper.last_cpu, tier, answer.status))
            answers.append(answer)
        differ += answers[0] != answers[1]
        load.append(os.getloadavg()[0])
        if checked is None:
            continue
        lv, cd = checked["live"][photo.key][0], checked["cards"][owner][0]
        if isinstance(lv, str) or isinstance(cd, str):
            expected = "unusable"
        else:
            d = float(np.linalg.norm(lv - cd))
            expected = "match" if d <= parallel.settings.thresholds.card_photo else "no_match"
        unlike_checked += answers[0].status != expected
    print(
        f"\n1:1 as the kiosk calls it (FaceService.verify, a card photo not seen before), "
        f"{len(pairs)} genuine pairs; load average {min(load):.1f}-{max(load):.1f}; helper "
        f"ready in {started:.1f} s; verdicts: helper vs in turn differ {differ}"
        + ("" if checked is None else f", vs the per-photo run {unlike_checked}")
    )
    head = (
        f"{'mode':<38}{'wall p50/p95':>14}{'(all checks)':>14}{'CPU here':>12}"
        f"{'CPU helper':>12}{'longer CPU':>12}"
    )
    print(head)
    print("-" * len(head))

    def fmt(values: list[float]) -> str:
        return "{:.0f}/{:.0f}".format(*_ms(values)) if values else "-"

    for mode in modes:
        usable = [r for r in rows[mode] if r[4] != "unusable"]
        print(
            f"{mode:<38}{fmt([r[0] for r in usable]):>14}{fmt([r[0] for r in rows[mode]]):>14}"
            f"{fmt([r[1] for r in usable]):>12}{fmt([r[2] for r in usable]):>12}"
            f"{fmt([max(r[1], r[2]) for r in usable]):>12}"
        )
    print("per tier (live / card), ms p50/p95: wall helper | longer CPU helper | wall in turn")
    tiers: dict[str, list[int]] = {}
    for i, r in enumerate(rows[modes[0]]):
        tiers.setdefault(r[3], []).append(i)
    for tier, idx in sorted(tiers.items(), key=lambda kv: -len(kv[1])):
        par = [rows[modes[0]][i] for i in idx]
        seq = [rows[modes[1]][i] for i in idx]
        print(
            f"  {tier:<36}n={len(idx):>4}  {fmt([r[0] for r in par]):>9} | "
            f"{fmt([max(r[1], r[2]) for r in par]):>9} | {fmt([r[0] for r in seq]):>9}"
        )
    helper.close()


def bench_steps(reps: int = 20) -> None:
    """What each step of the cascade costs, on one kiosk frame with a 52-px face and
    one card photo: the fastest of ``reps`` runs, close to an idle core's time however
    busy the machine is, and the median."""
    from hcmiddleware.face.detectors import BlazeFaceDetector
    from hcmiddleware.face.dlib_backend import DlibBackend
    from hcmiddleware.face.image import decode_photo
    from hcmiddleware.face.kiosk_set import build_kiosk_set
    from hcmiddleware.face.quality import _refine

    kiosk = build_kiosk_set(people=["t1_2"], sizes=(52,), conditions=("clean",))
    frame_bytes, card_bytes = kiosk.live[0].data, kiosk.cards["t1_2"]

    def decode(data: bytes) -> np.ndarray:
        return decode_photo(data, photo="live", max_side=800, max_pixels=10**8).image

    frame, card = decode(frame_bytes), decode(card_bytes)
    backend = DlibBackend()
    blaze = BlazeFaceDetector()
    h, w = frame.shape[0], frame.shape[1]

    def whole(detector: BlazeFaceDetector, image: np.ndarray, score: float) -> object:
        return detector._decode(detector._infer(image, score), score, 2.0, w, h)

    found = blaze.detect(frame, min_score=0.5)
    box = _refine(frame, found[0], backend) if found else None
    card_box = backend.detect(card, upsample=1)[0]
    steps: dict[str, Callable[[], object]] = {
        "decode frame (JPEG 640x480)": lambda: decode(frame_bytes),
        "HOG, frame": lambda: backend.detect(frame, upsample=0),
        "BlazeFace, whole frame": lambda: whole(blaze, frame, 0.5),
        "BlazeFace, whole + 4 quarters": lambda: blaze.detect(np.zeros_like(frame)),
        "refine (HOG on the crop)": lambda: _refine(frame, found[0], backend),
        "BlazeFace whole + quarters, weak guesses": lambda: blaze.search(
            np.zeros_like(frame), min_score=0.5, floor=0.05
        ),
        "HOG doubled, frame (last resort)": lambda: backend.detect(frame, upsample=1),
        "encode, frame's face": lambda: backend.encode(frame, box),
        "decode card (102x126)": lambda: decode(card_bytes),
        "HOG doubled, card": lambda: backend.detect(card, upsample=1),
        "BlazeFace, card": lambda: blaze.detect(card, min_score=0.5),
        "encode, card's face": lambda: backend.encode(card, card_box),
    }
    print(f"\ncascade steps, ms fastest / median of {reps} (load average {os.getloadavg()[0]:.2f})")
    for name, step in steps.items():
        runs = _timed(step, reps)
        print(f"  {name:<36}{min(runs) * 1000:7.1f} /{statistics.median(runs) * 1000:7.1f}")


def bench_gil() -> None:
    """Whether each dlib call lets other Python threads run meanwhile (releases the
    GIL): a thread counting in a loop is watched during the call; its share of its
    free-running rate is printed (≈0: the call holds the GIL)."""
    import threading

    import dlib
    import face_recognition_models as models

    from hcmiddleware.face.image import decode_photo
    from hcmiddleware.face.kiosk_set import build_kiosk_set

    kiosk = build_kiosk_set(people=["t1_2"], sizes=(110,), conditions=("clean",))
    img = decode_photo(kiosk.live[0].data, photo="live", max_side=800, max_pixels=10**8).image
    hog = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
    encoder = dlib.face_recognition_model_v1(models.face_recognition_model_location())
    cnn = dlib.cnn_face_detection_model_v1(models.cnn_face_detector_model_location())
    rect = hog(img, 0)[0]
    shape = predictor(img, rect)
    small = np.ascontiguousarray(img[::4, ::4])
    calls: dict[str, Callable[[], object]] = {
        "HOG detector": lambda: hog(img, 0),
        "ResNet descriptor": lambda: encoder.compute_face_descriptor(img, shape, 1),
        "CNN detector": lambda: cnn(small, 0),
    }
    count = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            count[0] += 1

    print(f"\nGIL during dlib's calls (load average {os.getloadavg()[0]:.2f}):")
    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        for name, call in calls.items():
            call()
            c0, t0 = count[0], time.perf_counter()
            time.sleep(0.1)
            free = (count[0] - c0) / (time.perf_counter() - t0)
            c0, t0 = count[0], time.perf_counter()
            call()
            took = time.perf_counter() - t0
            during = (count[0] - c0) / took
            print(f"  {name:<20}{took * 1000:7.1f} ms, other thread ran at {during / free:.0%}")
    finally:
        stop.set()
        spinner.join()


def bench_breakdown(limit: int = 0) -> None:
    """Where a first 1:1 check's time goes, per cascade tier, on the kiosk set's genuine
    pairs: every step of the live photo's and the card photo's path timed alone (thread
    CPU time, close to an idle core's time on a shared machine), median / p95 per tier.
    The steps run one after the other, as the sequential path runs them."""
    import face_recognition.api as fra

    from hcmiddleware.face import detectors
    from hcmiddleware.face.dlib_backend import DlibBackend
    from hcmiddleware.face.kiosk_set import build_kiosk_set
    from hcmiddleware.face.settings import FaceSettings

    steps: list[tuple[str, float]] = []
    shape: list[tuple[int, int]] = [(0, 0)]

    def timed(name: str, fn: Callable[[], object]) -> object:
        c0 = time.thread_time()
        out = fn()
        steps.append((name, time.thread_time() - c0))
        return out

    class TimedBackend(DlibBackend):
        def detect(self, image, *, upsample=None):  # type: ignore[no-untyped-def]
            h, w = image.shape[0], image.shape[1]
            times = self.upsample_for(image) if upsample is None else upsample
            name = f"HOG x{2**times}" if times else "HOG"
            if (h, w) != shape[0]:
                name = "HOG on a crop"
            return timed(name, lambda: DlibBackend.detect(self, image, upsample=upsample))

        def encode(self, image, box):  # type: ignore[no-untyped-def]
            import dlib

            rect = dlib.rectangle(box.left, box.top, box.right, box.bottom)
            img = np.ascontiguousarray(image)
            shape = timed("landmarks (5-point)", lambda: fra.pose_predictor_5_point(img, rect))
            timed(
                "descriptor (ResNet)",
                lambda: fra.face_encoder.compute_face_descriptor(img, shape, 1),
            )
            return DlibBackend.encode(self, image, box)  # the template itself, not timed

    blaze = detectors.load_fallback("blazeface")
    assert isinstance(blaze, detectors.BlazeFaceDetector)
    search = blaze.search

    def timed_search(image, **kwargs):  # type: ignore[no-untyped-def]
        return timed("BlazeFace", lambda: search(image, **kwargs))

    blaze.search = timed_search  # type: ignore[method-assign]  # the instance's, for now
    try:
        backend = TimedBackend()
        settings = FaceSettings()
        kiosk = build_kiosk_set()
        from hcmiddleware.errors import UnusablePhotoError
        from hcmiddleware.face.image import decode_photo

        def path(data: bytes, role: str) -> tuple[str, dict[str, float]]:
            steps.clear()
            photo = timed(
                "decode",
                lambda: decode_photo(data, photo=role, max_side=800, max_pixels=40_000_000),
            )
            shape[0] = photo.image.shape[:2]  # type: ignore[attr-defined]
            tier = "-"
            try:
                face = check_photo(data, backend, settings, role=role)
                tier = face.detector
                backend.encode(face.photo.image, face.box)
            except UnusablePhotoError:
                tier = "unusable"
            del photo
            out: dict[str, float] = {}
            for name, sec in steps:
                out[name] = out.get(name, 0.0) + sec
            return tier, out

        backend.encode(
            *(lambda f: (f.photo.image, f.box))(  # warm-up
                check_photo(
                    kiosk.cards[next(iter(kiosk.cards))], backend, settings, role="reference"
                )
            )
        )
        cards = {owner: path(data, "reference") for owner, data in kiosk.cards.items()}
        pairs = list(kiosk.genuine())
        if limit:
            pairs = pairs[:limit]
        groups: dict[str, list[tuple[dict[str, float], dict[str, float]]]] = {}
        for photo, owner in pairs:
            ltier, lsteps = path(photo.data, "live")
            ctier, csteps = cards[owner]
            groups.setdefault(f"{ltier} / {ctier}", []).append((lsteps, csteps))
    finally:
        del blaze.search
    print(
        f"\nwhere a first check's time goes (CPU ms of each step, median / p95 over the "
        f"checks of a tier; load average {os.getloadavg()[0]:.2f})"
    )
    for tier, rows in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        print(f"  live / card tier {tier}: {len(rows)} checks")
        for side, idx in (("live", 0), ("card", 1)):
            names = sorted(
                {n for r in rows for n in r[idx]},
                key=lambda n: -statistics.median(r[idx].get(n, 0.0) for r in rows),
            )
            for n in names:
                vals = [r[idx].get(n, 0.0) for r in rows]
                med, p95 = _ms(vals)
                print(f"    {side:<5}{n:<26}{med:7.1f} /{p95:7.1f}")
            tot = [sum(r[idx].values()) for r in rows]
            print(f"    {side:<5}{'= path total':<26}{_ms(tot)[0]:7.1f} /{_ms(tot)[1]:7.1f}")
        tot = [sum(r[0].values()) + sum(r[1].values()) for r in rows]
        longest = [max(sum(r[0].values()), sum(r[1].values())) for r in rows]
        print(f"    {'check, sum of both paths':<31}{_ms(tot)[0]:7.1f} /{_ms(tot)[1]:7.1f}")
        print(f"    {'check, the longer path':<31}{_ms(longest)[0]:7.1f} /{_ms(longest)[1]:7.1f}")


def bench_detectors() -> None:
    """The detectors the cascade could fall back on, each on its own, on the kiosk set:
    how many faces each finds where they are (within half a face of the true centre;
    anything else found counts as false), and its time per photo."""
    import dlib

    from hcmiddleware.face.detectors import BlazeFaceDetector, DlibCnnDetector
    from hcmiddleware.face.dlib_backend import DlibBackend
    from hcmiddleware.face.image import decode_photo
    from hcmiddleware.face.kiosk_set import CONDITIONS, FACE_SIZES, build_kiosk_set

    kiosk = build_kiosk_set()
    backend = DlibBackend()
    backend.detect(np.zeros((64, 64, 3), np.uint8))  # models load
    blaze = BlazeFaceDetector()
    cnn = DlibCnnDetector(max_side=320)
    hog = dlib.get_frontal_face_detector()

    def boxes_hog(img: np.ndarray, up: int) -> list[tuple[float, float, float, float]]:
        return [(d.left(), d.top(), d.right(), d.bottom()) for d in hog(img, up)]

    def boxes_of(found: list) -> list[tuple[float, float, float, float]]:
        return [(c.box.left, c.box.top, c.box.right, c.box.bottom) for c in found]

    detectors: dict[str, Callable[[np.ndarray], list]] = {
        "HOG": lambda img: boxes_hog(img, 0),
        "HOG x2": lambda img: boxes_hog(img, 1),
        "BlazeFace": lambda img: boxes_of(blaze.detect(img, min_score=0.5)),
        "dlib CNN <=320": lambda img: boxes_of(cnn.detect(img, min_score=0.0)),
    }
    print(
        f"\ndetectors alone on the kiosk set (load average {os.getloadavg()[0]:.2f}): faces "
        "found in place / photos, false finds, ms median/p95"
    )
    rows: dict[str, dict[str, list]] = {}
    photos = [(f"card {owner}", data, None, "card") for owner, data in kiosk.cards.items()] + [
        (p.key, p.data, p, p.condition) for p in kiosk.live
    ]
    for _key, data, live, group in photos:
        img = decode_photo(data, photo="live", max_side=800, max_pixels=10**8).image
        for name, detect in detectors.items():
            t0 = time.perf_counter()
            found = detect(img)
            took = time.perf_counter() - t0
            if live is None:  # a card photo holds one face
                good, bad = min(1, len(found)), max(0, len(found) - 1)
            else:
                cx, cy = live.centre
                near = [
                    b
                    for b in found
                    if abs((b[0] + b[2]) / 2 - cx) < live.face_px / 2
                    and abs((b[1] + b[3]) / 2 - cy) < live.face_px / 2
                ]
                good, bad = min(1, len(near)), len(found) - len(near)
            keys = [group, "all frames" if live else "cards"]
            if live:
                keys.append(f"{live.face_px} px")
            for k in keys:
                cell = rows.setdefault(k, {}).setdefault(name, [0, 0, 0, []])
                cell[0] += good
                cell[1] += bad
                cell[2] += 1
                cell[3].append(took)
    head = f"{'photos':<16}" + "".join(f"{n:>24}" for n in detectors)
    print(head)
    print("-" * len(head))
    order = ["cards", "all frames", *CONDITIONS, *(f"{s} px" for s in FACE_SIZES)]
    for k in order:
        cells = []
        for name in detectors:
            good, bad, n, took = rows[k][name]
            med, p95 = _ms(took)
            cells.append(f"{good}/{n} {bad} {med:.0f}/{p95:.0f}")
        print(f"{k:<16}" + "".join(f"{c:>24}" for c in cells))


def bench_cnn_sizes(sizes: tuple[int, ...] = (120, 160, 200, 240, 320)) -> None:
    """dlib's CNN fallback on the card photos scaled to each size: faces found and time
    per photo (its time grows with the square of the size)."""
    from hcmiddleware.face.detectors import DlibCnnDetector
    from hcmiddleware.face.image import decode_photo
    from hcmiddleware.face.kiosk_set import build_kiosk_set

    kiosk = build_kiosk_set(sizes=(52,), conditions=("clean",))
    cards = [
        decode_photo(d, photo="reference", max_side=800, max_pixels=10**8).image
        for d in kiosk.cards.values()
    ]
    print(f"\ndlib CNN on the {len(cards)} card photos (load average {os.getloadavg()[0]:.2f})")
    for size in sizes:
        cnn = DlibCnnDetector(max_side=size)
        cnn.detect(cards[0])  # warm-up
        found, took = 0, []
        for img in cards:
            t = time.perf_counter()
            found += len(cnn.detect(img, min_score=0.0)) == 1
            took.append(time.perf_counter() - t)
        med, p95 = _ms(took)
        print(f"  scaled to {size:>3} px: {found}/{len(cards)} faces, {med:.0f} / {p95:.0f} ms")


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
    parser.add_argument("--skip-kiosk", action="store_true")
    parser.add_argument(
        "--kiosk-only", action="store_true", help="only the kiosk set (a few minutes)"
    )
    parser.add_argument(
        "--detectors",
        action="store_true",
        help="also each fallback candidate alone on the kiosk set (dlib's CNN: ~3 min)",
    )
    parser.add_argument(
        "--crowded",
        type=int,
        default=0,
        metavar="N",
        help="also time searches at planted groups of near-identical templates in a "
        "gallery of N (the shortlist engines' fallbacks); 0 to skip",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=0,
        metavar="N",
        help="time FaceService.verify on about N genuine pairs spread over the set "
        "(default: all 252)",
    )
    parser.add_argument(
        "--kiosk-verify",
        action="store_true",
        help="only the kiosk set's 1:1 through FaceService.verify (no accuracy run, ~3 min)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="only the time of each step of a first check, per tier (kiosk set, ~2 min)",
    )
    args = parser.parse_args()
    if args.kiosk_verify:
        from hcmiddleware.face.kiosk_set import build_kiosk_set

        bench_kiosk_verify(build_kiosk_set(), None, args.pairs)
        return
    if args.breakdown:
        bench_gil()
        bench_breakdown()
        return
    if args.kiosk_only:
        bench_steps()
        bench_kiosk(args.pairs)
        if args.detectors:
            bench_detectors()
            bench_cnn_sizes()
        return
    if not args.skip_kiosk:
        bench_steps()
        bench_kiosk(args.pairs)
    if args.detectors:
        bench_detectors()
        bench_cnn_sizes()
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
