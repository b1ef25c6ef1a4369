"""Published numbers to print next to ours (DMF paper, DMF-XL/2, 50k samples, FID vs ImageNet train)."""

PAPER_FID = {
    "imagenet256": {1: 2.16, 2: 1.64, 4: 1.51},
    "imagenet512": {1: 2.12, 2: 1.75, 4: 1.68},
}


def paper_fid(paper: str | None, steps: int) -> float | None:
    if not paper:
        return None
    if paper not in PAPER_FID:
        raise ValueError(f"eval.paper={paper!r} must be one of {sorted(PAPER_FID)} or null")
    return PAPER_FID[paper].get(int(steps))
