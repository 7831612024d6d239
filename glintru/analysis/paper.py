"""The paper's published numbers (Zhang et al., KDD'25), for tables that put ours beside them.

TABLE2: test Recall@10 / MRR@10 / NDCG@10 (the paper's popularity-sampled protocol, RecBole).
TABLE3: inference ms per 2,048-user batch, training seconds per epoch and GPU memory (GB) on the
authors' GPU. Both keyed by dataset preset name, then model registry name.
"""

from __future__ import annotations

# The metrics the paper reports (Tables 2, 4, 6, 8, 9), in its column order: every table that puts
# ours beside the paper's reads them from here.
PAPER_METRICS: tuple[str, ...] = ("recall@10", "mrr@10", "ndcg@10")
_T2_ROWS = {
    "ml-1m": {
        "gru4rec": (0.6954, 0.4055, 0.4748),
        "bert4rec": (0.7119, 0.4041, 0.4776),
        "sasrec": (0.7205, 0.4251, 0.4958),
        "linrec": (0.7184, 0.4316, 0.5002),
        "lightsans": (0.7195, 0.4314, 0.5003),
        "smlp4rec": (0.6753, 0.3870, 0.4558),
        "mamba4rec": (0.7238, 0.4368, 0.5054),
        "glintru": (0.7379, 0.4517, 0.5202),
    },
    "beauty": {
        "gru4rec": (0.3851, 0.1891, 0.2351),
        "bert4rec": (0.3478, 0.1584, 0.2027),
        "sasrec": (0.4332, 0.2325, 0.2798),
        "linrec": (0.4270, 0.2314, 0.2775),
        "lightsans": (0.4406, 0.2358, 0.2840),
        "smlp4rec": (0.4457, 0.2408, 0.2891),
        "mamba4rec": (0.4233, 0.2213, 0.2689),
        "glintru": (0.4472, 0.2498, 0.2964),
    },
    "video-games": {
        "gru4rec": (0.6028, 0.2929, 0.3660),
        "bert4rec": (0.5490, 0.2541, 0.2916),
        "sasrec": (0.6459, 0.3404, 0.4128),
        "linrec": (0.6384, 0.3355, 0.4073),
        "lightsans": (0.6488, 0.3415, 0.4142),
        "smlp4rec": (0.6480, 0.3484, 0.4195),
        "mamba4rec": (0.6488, 0.3389, 0.4123),
        "glintru": (0.6573, 0.3549, 0.4266),
    },
}
TABLE2: dict[str, dict[str, dict[str, float]]] = {
    ds: {m: dict(zip(PAPER_METRICS, v)) for m, v in rows.items()} for ds, rows in _T2_ROWS.items()
}

_T3_COLUMNS = ("infer_ms_per_batch", "seconds_per_epoch", "gpu_memory_gb")
_T3_ROWS: dict[str, dict[str, tuple[float, float, float]]] = {
    "ml-1m": {
        "bert4rec": (88, 285, 21.51),
        "sasrec": (55, 172, 21.51),
        "linrec": (37, 101, 11.67),
        "lightsans": (43, 130, 16.99),
        "smlp4rec": (51, 151, 16.13),
        "mamba4rec": (41, 108, 7.72),
        "glintru": (31, 86, 8.81),
    },
    "beauty": {
        "bert4rec": (1372, 13, 11.69),
        "sasrec": (444, 8.1, 7.67),
        "linrec": (340, 5.6, 4.14),
        "lightsans": (427, 7.2, 4.57),
        "smlp4rec": (361, 5.3, 2.95),
        "mamba4rec": (351, 4.5, 2.32),
        "glintru": (278, 3.8, 2.62),
    },
    "video-games": {
        "bert4rec": (1290, 15, 10.98),
        "sasrec": (406, 9.6, 7.65),
        "linrec": (327, 6.6, 4.13),
        "lightsans": (369, 8.3, 4.55),
        "smlp4rec": (389, 9.1, 3.38),
        "mamba4rec": (309, 5.6, 2.28),
        "glintru": (247, 4.5, 2.49),
    },
}
TABLE3: dict[str, dict[str, dict[str, float]]] = {
    ds: {m: dict(zip(_T3_COLUMNS, map(float, v))) for m, v in rows.items()} for ds, rows in _T3_ROWS.items()
}
