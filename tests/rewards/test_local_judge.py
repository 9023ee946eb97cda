"""LocalJudge: answer-token math against a NumPy reference, and what the default SmolLM2 judge
manages on hand-written cases.

The hand-written pairs below were written before the model was run on them and were not changed
afterwards; the asserted floors are the counts measured on the first run (see the README).
"""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import negojax
from negojax.api import Model
from negojax.models import transformer
from negojax.models.config import ModelConfig
from negojax.rewards import LocalJudge, rubric
from negojax.tokenization import load_tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
# Measured on the first run of the default SmolLM2-135M-Instruct (float32, CPU): the inclusive
# solution scored higher in 4 of 5 pairs (every score 2.1-2.5; margins 0.05-0.19 points; pair 5,
# facial recognition, reversed by 0.09), the agreeing exchange got the higher P(yes) in 2 of 3
# cases (margins under 0.05; every P(yes) was 0.23-0.34, so the judge leans to "no"), and
# prefer() gave P(A) > 0.5 in both orders for all 5 pairs (0.59-0.79): a position bias only.
# (On that run pairs 4 and 5 held their two solutions in swapped slots, a typo fixed afterwards
# without touching any text; the counts here are for the corrected order.)
MEASURED_CA_CORRECT = 4
MEASURED_AGREEMENT_CORRECT = 2


def _persona(name, core_value, wants, fears, style):
    return {"name": name, "core_value": core_value, "wants": wants, "fears": fears,
            "style": style}


# (dilemma, personas, inclusive solution, one-sided solution). The one-sided solution favours the
# second persona in pair 4 and the first in the others.
CA_PAIRS = [
    (
        "A therapist's client confesses to a robbery for which an innocent man is now serving a "
        "prison sentence. The therapist must decide what to do with this confession.",
        [_persona("Dr. Lena Ortiz", "confidentiality", "to keep the client's trust and the "
                  "therapeutic relationship intact", "clients stop being honest in therapy",
                  "calm and careful"),
         _persona("Marcus Bell", "justice", "the innocent man freed as soon as possible",
                  "an innocent person losing years of his life", "direct and urgent")],
        "The therapist works with the client over the next sessions to help him come forward "
        "voluntarily, with a defence lawyer the therapist helps him find. The client gives a "
        "statement that frees the innocent man, his cooperation is put before the court in his "
        "favour, and therapy continues, so the trust between them survives and the client "
        "takes responsibility on his own terms.",
        "The therapist keeps the confession secret and never mentions it again. The innocent "
        "man stays in prison.",
    ),
    (
        "A public hospital must cut its yearly budget by ten percent. The largest cost is "
        "nursing staff, and the wards are already busy.",
        [_persona("Paul Grant", "cost control", "a balanced budget this year",
                  "the hospital running out of money", "numbers first"),
         _persona("Amara Osei", "quality of care", "safe nurse-to-patient ratios",
                  "patients harmed by overworked staff", "passionate and practical")],
        "The hospital keeps current nurse-to-patient ratios and finds the savings elsewhere: it "
        "renegotiates supplier contracts, cuts energy use, merges two administrative offices, "
        "and lets nurses co-design a new scheduling system that reduces paid overtime. A joint "
        "committee of finance and nursing reviews the savings and patient safety figures every "
        "quarter and adjusts the plan together.",
        "The hospital lays off fifteen percent of its nurses to hit the budget target "
        "immediately.",
    ),
    (
        "A software company's new manager wants the whole team back in the office. One senior "
        "engineer is the only carer for her young child and has worked remotely for three "
        "years.",
        [_persona("Tom Reyes", "team collaboration", "people in the same room to solve problems "
                  "faster", "the team drifting apart", "energetic"),
         _persona("Priya Nair", "family and flexibility", "to be home when her child leaves "
                  "school", "losing the job she is good at", "quiet and precise")],
        "The team agrees on two fixed office days each week for planning and pair work, with "
        "core hours that end before school closes; the other days are remote. Priya leads the "
        "written design reviews so remote work stays visible, and the team reviews the "
        "arrangement after three months to see whether collaboration and wellbeing both "
        "improved.",
        "Everyone must work from the office five days a week with no exceptions. Priya can "
        "resign if she cannot manage it.",
    ),
    (
        "A professional cellist practises at home for four hours every evening before a major "
        "audition. The family next door has a baby who cannot sleep through the noise.",
        [_persona("Elena Novak", "her music career", "enough practice time to win the audition",
                  "losing her one big chance", "intense"),
         _persona("Sam Carter", "his family's health", "quiet evenings so the baby can sleep",
                  "an exhausted family", "tired but fair")],
        "Elena moves her evening practice to the afternoon and early evening, ending before the "
        "baby's bedtime at seven. The neighbours share the cost of soundproofing panels on the "
        "shared wall, and the local community centre lends Elena a room on weekend nights until "
        "the audition. They check in after two weeks and adjust the times if the baby still "
        "wakes.",
        "Elena stops practising at home; she must find somewhere else or practise less. The "
        "Carters get their quiet evenings back.",
    ),
    (
        "A city council is deciding whether to add facial recognition to its street cameras "
        "after a rise in violent crime.",
        [_persona("Chief Dana Wells", "public safety", "tools to catch violent offenders "
                  "quickly", "more victims of crime", "firm"),
         _persona("Omar Haddad", "privacy", "people free to walk the city without being "
                  "tracked", "a surveillance state that targets minorities", "principled")],
        "The city adds cameras only in the few areas where violent crime rose, without facial "
        "recognition running by default. Police may run a face search only with a judge's "
        "warrant for a named violent crime, footage is deleted after thirty days unless it is "
        "evidence, and an independent board with community members audits every search and "
        "publishes a yearly report. The council reviews crime and complaint figures after a "
        "year.",
        "Facial recognition is switched on for every camera in the city, all footage is kept "
        "forever, and the police may search it for any reason without oversight.",
    ),
]

# (dilemma index into CA_PAIRS, agreeing turns, disagreeing turns).
AGREEMENT_CASES = [
    (1,
     [("Paul Grant", "If we keep the nurse ratios, can we find the ten percent in suppliers, "
                     "energy and admin? I think that works."),
      ("Amara Osei", "Yes. I agree: keep the ratios, cut suppliers, energy and admin, and review "
                     "it together every quarter. Let's do it.")],
     [("Paul Grant", "The only way to hit ten percent is to cut nursing staff. That is final."),
      ("Amara Osei", "No. I will never accept cutting nurses. Patients will be harmed and I "
                     "reject your plan completely.")]),
    (2,
     [("Tom Reyes", "How about two office days a week with core hours ending before school "
                    "closes?"),
      ("Priya Nair", "That works for me. Two office days with early core hours, remote the rest "
                     "of the week. Agreed.")],
     [("Tom Reyes", "Five days in the office. I will not discuss exceptions."),
      ("Priya Nair", "Then we have nothing to agree on. I will not come in five days a week.")]),
    (3,
     [("Elena Novak", "I can end practice before seven and use the community centre at "
                      "weekends, if we share the cost of panels on the wall."),
      ("Sam Carter", "Deal. Practice until seven, the centre at weekends, and we split the "
                     "panels. We agree.")],
     [("Elena Novak", "I need to practise every evening until late. That is not negotiable."),
      ("Sam Carter", "Then I will call the council about the noise. We do not agree at all.")]),
]


# ------------------------------------------------------------------------ math on a tiny model


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(negojax.default_model_dir())


def _tiny_model(tokenizer):
    """Two layers, SmolLM2's vocabulary. NumPy init (NNX init of a 49k vocab is slow on CPU);
    an untied lm_head at 1/sqrt(D) spreads the answer logits so the checks discriminate."""
    config = ModelConfig("llama", tokenizer.vocab_size, 64, 128, 2, 4, 2, 16,
                         tie_word_embeddings=False)
    rng = np.random.default_rng(3)

    def init(name, shape):
        if name.endswith("norm"):
            return np.ones(shape, np.float32)
        fan_in = (shape[0] if name in ("embed", "lm_head") else
                  int(np.prod(shape[1:1 + transformer.PROJECTION_INPUT_DIMS[name]])))
        return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)

    params = {key: ({name: init(name, shape) for name, shape in value.items()}
                    if key == "layers" else init(key, value))
              for key, value in transformer.param_shapes(config).items()}
    return Model(config, params, tokenizer)


@pytest.fixture(scope="module")
def tiny_model(tokenizer):
    return _tiny_model(tokenizer)


def _reference(model, conversations, answer_ids):
    """NumPy: each prompt alone through the full forward, logits at its last position ->
    log-sum-exp over the spellings of each answer. [N, A]"""
    rows = []
    for messages in conversations:
        ids = model.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        logits = np.asarray(model.logits(np.asarray([ids], np.int32)))[0, -1]
        picked = np.asarray([[logits[i] for i in spellings] for spellings in answer_ids])
        top = picked.max(axis=1, keepdims=True)
        rows.append((top + np.log(np.exp(picked - top).sum(axis=1, keepdims=True)))[:, 0])
    return np.asarray(rows, np.float64)


def _ca_columns(n):
    """The first n solutions of CA_PAIRS (inclusive, one-sided, inclusive, ...)."""
    rows = [(d, p, s) for d, p, good, bad in CA_PAIRS for s in (good, bad)][:n]
    return [list(column) for column in zip(*rows)]


def _agreement_columns(n):
    rows = [(CA_PAIRS[i][0], CA_PAIRS[i][1], turns)
            for i, agreeing, disagreeing in AGREEMENT_CASES for turns in (agreeing, disagreeing)]
    return [list(column) for column in zip(*rows[:n])]


@pytest.fixture(scope="module")
def ca_reference(tiny_model, tokenizer):
    dilemmas, personas, solutions = _ca_columns(3)
    conversations = [rubric.ca_score_messages(d, p, s)
                     for d, p, s in zip(dilemmas, personas, solutions)]
    lengths = {len(tokenizer.apply_chat_template(c)) for c in conversations}
    assert len(lengths) == 3  # rows really differ in length, so padding and the gather matter
    logits = _reference(tiny_model, conversations,
                        [[tokenizer.token_to_id(str(k))] for k in range(6)])
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return (dilemmas, personas, solutions), probs @ np.arange(6)


# batch_size=None: 3 rows padded to a batch of 4; batch_size=2: batches of 2 and of 1.
@pytest.mark.parametrize("batch_size", [None, 2])
def test_ca_score_matches_numpy_reference(tiny_model, ca_reference, batch_size):
    (dilemmas, personas, solutions), expected = ca_reference
    got = LocalJudge(tiny_model, batch_size=batch_size).ca_score(dilemmas, personas, solutions)
    assert got.dtype == np.float64 and got.shape == (3,)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert np.ptp(expected) > 0.01  # the check discriminates between rows


def test_agreement_sums_yes_spellings_against_numpy_reference(tiny_model, tokenizer):
    dilemmas, personas, turns = _agreement_columns(3)
    conversations = [rubric.agreement_messages(d, p, t)
                     for d, p, t in zip(dilemmas, personas, turns)]
    spellings = [[tokenizer.token_to_id("yes"), tokenizer.token_to_id("Yes")],
                 [tokenizer.token_to_id("no"), tokenizer.token_to_id("No")]]
    logits = _reference(tiny_model, conversations, spellings)
    expected = 1.0 / (1.0 + np.exp(logits[:, 1] - logits[:, 0]))
    got = LocalJudge(tiny_model).agreement(dilemmas, personas, turns)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_prefills_compile_once_per_bucket(tiny_model):
    judge = LocalJudge(tiny_model)
    dilemmas, personas, solutions = _ca_columns(3)
    judge.ca_score(dilemmas, personas, solutions)
    before = _judge_prefill_cache_size()
    # Other texts of the same length bucket and batch bucket reuse the compiled program.
    judge.ca_score(dilemmas[::-1], personas[::-1], [s + " Agreed." for s in solutions])
    assert _judge_prefill_cache_size() == before


def _judge_prefill_cache_size():
    from negojax.sampling.sampler import _prefill
    return _prefill._cache_size()


def test_model_without_tokenizer_is_refused_in_one_line(tiny_model):
    with pytest.raises(ValueError, match="tokenizer") as error:
        LocalJudge(Model(tiny_model.config, tiny_model.params))
    assert "\n" not in str(error.value)


def _sharded_worker(out_path):
    """Run under 8 fake CPU devices: the same scores on a (2, 2, 2) mesh as on one device."""
    from negojax.parallel.mesh import make_mesh
    from negojax.parallel.sharding import LogicalRules
    model = _tiny_model(load_tokenizer(negojax.default_model_dir()))
    dilemmas, personas, solutions = _ca_columns(3)
    plain = LocalJudge(model).ca_score(dilemmas, personas, solutions)
    rules = LogicalRules(make_mesh(2, 2, 2))
    judge = LocalJudge(model, rules=rules)
    sharded = judge.ca_score(dilemmas, personas, solutions)
    with open(out_path, "w") as f:
        json.dump({"plain": plain.tolist(), "sharded": sharded.tolist(),
                   "devices": len(jax.devices()),
                   "wq_spec": str(judge.params["layers"]["wq"].sharding.spec)}, f)


def test_sharded_prefill_matches_one_device(tmp_path):
    out = tmp_path / "sharded.json"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu"}
    subprocess.run([sys.executable, os.path.abspath(__file__), str(out)], env=env, cwd=HERE,
                   check=True, timeout=300)
    result = json.loads(out.read_text())
    assert result["devices"] == 8
    assert result["wq_spec"] == "P(None, 'fsdp', 'tensor', None)"
    np.testing.assert_allclose(result["sharded"], result["plain"], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ the default SmolLM2 judge


@pytest.fixture(scope="module")
def smollm_judge():
    return LocalJudge()  # the embedded SmolLM2-135M-Instruct


@pytest.mark.slow  # the 135M model on ~600-token prompts: 1-2 minutes on 2 shared CPU cores
def test_smollm2_ranks_inclusive_solutions_above_one_sided(smollm_judge):
    dilemmas = [d for d, _, _, _ in CA_PAIRS] * 2
    personas = [p for _, p, _, _ in CA_PAIRS] * 2
    solutions = [good for _, _, good, _ in CA_PAIRS] + [bad for _, _, _, bad in CA_PAIRS]
    scores = smollm_judge.ca_score(dilemmas, personas, solutions)
    inclusive, one_sided = scores[:5], scores[5:]
    correct = int(np.sum(inclusive > one_sided))
    print(f"\nSmolLM2 CA scores inclusive={np.round(inclusive, 3).tolist()} "
          f"one-sided={np.round(one_sided, 3).tolist()}; ranked correctly: {correct}/5")
    assert np.all((scores >= 0) & (scores <= 5))
    assert correct >= MEASURED_CA_CORRECT


@pytest.mark.slow  # the 135M model on ~600-token prompts: 1-2 minutes on 2 shared CPU cores
def test_smollm2_agreement_probabilities(smollm_judge):
    dilemmas, personas, turns = _agreement_columns(2 * len(AGREEMENT_CASES))
    probs = smollm_judge.agreement(dilemmas, personas, turns)
    agree, disagree = probs[0::2], probs[1::2]
    correct = int(np.sum(agree > disagree))
    print(f"\nSmolLM2 P(agree) agreeing={np.round(agree, 3).tolist()} "
          f"disagreeing={np.round(disagree, 3).tolist()}; ordered correctly: "
          f"{correct}/{len(AGREEMENT_CASES)}")
    assert np.all((probs >= 0) & (probs <= 1))
    assert correct >= MEASURED_AGREEMENT_CORRECT


@pytest.mark.slow  # the 135M model on ~600-token prompts: 1-2 minutes on 2 shared CPU cores
def test_smollm2_prefer_gives_probabilities_in_both_orders(smollm_judge):
    questions = [f"{d}\nHow should this be resolved?" for d, _, _, _ in CA_PAIRS]
    good = [g for _, _, g, _ in CA_PAIRS]
    bad = [b for _, _, _, b in CA_PAIRS]
    a_first = smollm_judge.prefer(questions, good, bad)   # P(inclusive better)
    b_first = smollm_judge.prefer(questions, bad, good)   # P(one-sided better)
    consistent = int(np.sum((a_first > 0.5) & (b_first < 0.5)))
    print(f"\nSmolLM2 P(A) inclusive-first={np.round(a_first, 3).tolist()} "
          f"one-sided-first={np.round(b_first, 3).tolist()}; inclusive wins in both orders: "
          f"{consistent}/5")
    for probs in (a_first, b_first):
        assert probs.shape == (5,) and np.all(np.isfinite(probs))
        assert np.all((probs >= 0) & (probs <= 1))


if __name__ == "__main__":
    _sharded_worker(sys.argv[1])
