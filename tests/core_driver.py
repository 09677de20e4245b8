"""A small program driving the core the way the desk does, for crash and two-instance tests.

One *life*: load the model, then, in one thread, write a few new generated pictures into the
folder and scan it, round after round (the desk's scan worker, with its own connection); and
in the main thread make review decisions and undo some, as fast as a moderator never could
(the desk's GUI thread, with its own connection). After each `ReviewStore.decide` (or
`revert`) returns, the life appends `COMMITTED <id> <hash> <label>` to its report file, with a
single unbuffered write: what the report says was committed, the library must hold, whenever
the process is killed.

    python tests/core_driver.py run '<json>'   one life, to the end (two-instance test)
    python tests/core_driver.py zygote         imports torch and timm once, then forks a
                                               life for each `FORK <json>` line on stdin
                                               (the crash test kills lives, not the zygote)

Report lines: READY, SCAN <round>, SCANNED <round> <scored> <cached> <errors>, COMMITTED ...,
ERROR <what> (anything unexpected, with the traceback on stderr), DONE.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import traceback
from pathlib import Path


def life(args: dict) -> None:
    """One life, as the module docstring says.

    args: library, folder, model, report; seed (names the life's subfolder and reviewer);
    rounds and new_images (the scan rounds: the life scans exactly `rounds` times unless it
    fails or is killed); scan_seed and review_seed (one random stream per thread, so that a
    seed replays the choices whatever the threads' interleaving); review_interval_s (pause
    between two decisions; absent: 0 to 5 ms at random, as fast as a moderator never could);
    min_decisions (the reviewer goes on after the last round until it has made that many);
    max_seconds (a safety net for a life nobody kills: past it the life reports ERROR).
    """
    from nsfw_desk.core.review import DecisionInput, ReviewStore
    from nsfw_desk.core.runtime import load_model
    from nsfw_desk.core.scan import ScanOptions, scan_folder
    from nsfw_desk.core.store import Library
    from nsfw_desk.synthetic import write_photo

    report = os.open(args["report"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def say(line: str) -> None:
        os.write(report, (line + "\n").encode())

    seed = args["seed"]
    scan_rng = random.Random(args.get("scan_seed", f"scan-{seed}"))
    review_rng = random.Random(args.get("review_seed", f"review-{seed}"))
    interval = args.get("review_interval_s")
    min_decisions = args.get("min_decisions", 0)
    model = load_model(args["model"], device="cpu")
    # Counted from here: importing torch and loading the model take what they take.
    deadline = time.monotonic() + args.get("max_seconds", float("inf"))
    say("READY")
    folder = Path(args["folder"])
    library_path = Path(args["library"])
    scanning_done = threading.Event()
    scan_failed = threading.Event()

    def past_deadline(who: str) -> bool:
        if time.monotonic() <= deadline:
            return False
        say(f"ERROR {who} still running after max_seconds={args['max_seconds']}")
        return True

    def scanner() -> None:
        try:
            library = Library(library_path)
            try:
                for round_ in range(args["rounds"]):
                    for i in range(args["new_images"]):
                        size = (scan_rng.randint(64, 200), scan_rng.randint(64, 200))
                        write_photo(
                            folder / f"life{seed}" / f"r{round_}_{i}.jpg",
                            size,
                            seed=seed * 10_000 + round_ * 100 + i,
                        )
                    say(f"SCAN {round_}")
                    summary = scan_folder(
                        folder, model, library, options=ScanOptions(batch_size=4, workers=2)
                    )
                    say(f"SCANNED {round_} {summary.scored} {summary.cached} {summary.errors}")
                    if past_deadline("scan"):
                        scan_failed.set()
                        break
            finally:
                library.close()
        except BaseException as exc:
            scan_failed.set()
            traceback.print_exc()
            say(f"ERROR scan {type(exc).__name__}: {exc}".replace("\n", " "))
        finally:
            scanning_done.set()

    thread = threading.Thread(target=scanner, name="scan-worker")
    thread.start()
    try:
        library = Library(library_path)
        reviews = ReviewStore(library)
        mine: list[int] = []
        decisions = 0
        while not scanning_done.is_set() or (
            decisions < min_decisions and not scan_failed.is_set()
        ):
            if past_deadline("review"):
                break
            hashes = [
                row[0]
                for row in library.db.execute(
                    "SELECT DISTINCT hash FROM files WHERE hash IS NOT NULL ORDER BY hash"
                )
            ]
            if not hashes:
                time.sleep(0.01)
                continue
            reviewer = f"life{seed}"
            if mine and review_rng.random() < 0.2:
                ids = reviews.revert([review_rng.choice(mine)], reviewer=reviewer, threshold=0.5)
                picked = [
                    row[0]
                    for row in library.db.execute(
                        f"SELECT hash FROM decisions WHERE id IN ({','.join('?' * len(ids))}) "
                        "ORDER BY id",
                        ids,
                    )
                ]
                labels = ["?"] * len(ids)  # whatever the label before was
            else:
                picked = review_rng.sample(hashes, min(len(hashes), review_rng.randint(1, 3)))
                label = review_rng.choice(["unsafe", "safe", None])
                ids = reviews.decide(
                    [DecisionInput(h, model.model_id, review_rng.random(), None) for h in picked],
                    label,
                    reviewer=reviewer,
                    threshold=0.5,
                )
                labels = [label or "-"] * len(ids)
            for decision_id, digest, shown in zip(ids, picked, labels, strict=True):
                say(f"COMMITTED {decision_id} {digest} {shown}")
            mine.extend(ids)
            decisions += 1
            time.sleep(review_rng.uniform(0, 0.005) if interval is None else interval)
        library.close()
    except BaseException as exc:
        traceback.print_exc()
        say(f"ERROR review {type(exc).__name__}: {exc}".replace("\n", " "))
    thread.join()
    say("DONE")


def zygote() -> None:
    """Pay for `import torch, timm` once; each life is a fork of this process.

    Nothing here has run a torch operation, so no thread pool exists yet to break in the
    forked child; each life loads the model itself.
    """
    import timm  # noqa: F401
    import torch  # noqa: F401

    import nsfw_desk.core.review  # noqa: F401
    import nsfw_desk.core.runtime  # noqa: F401
    import nsfw_desk.core.scan  # noqa: F401
    import nsfw_desk.synthetic  # noqa: F401

    print("ZYGOTE", flush=True)
    for line in sys.stdin:
        command, _, payload = line.strip().partition(" ")
        if command == "FORK":
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    life(json.loads(payload))
                except BaseException:
                    traceback.print_exc()
                    code = 1
                finally:
                    os._exit(code)
            print(f"PID {pid}", flush=True)
        elif command == "WAIT":
            pid, status = os.waitpid(int(payload), 0)
            print(f"EXIT {pid} {status}", flush=True)
        elif command == "QUIT":
            break


if __name__ == "__main__":
    if sys.argv[1] == "zygote":
        zygote()
    else:
        life(json.loads(sys.argv[2]))
