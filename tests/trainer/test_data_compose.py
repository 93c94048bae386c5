"""The song generator's invariants over many seeds (MIDI only, nothing rendered)."""

from collections import Counter

import numpy as np
import pytest

from model.parts import PARTS
from trainer.data.compose import MODES, STYLES, Chord, chord_on, generate_song, voicing
from trainer.data.dataset import tempo_class
from trainer.data.slakh import inst_class_of, part_of_class

N_SONGS = 120


@pytest.fixture(scope="module")
def songs():
    return [generate_song(seed, 40.0) for seed in range(N_SONGS)]


def _part(inst):
    return PARTS[part_of_class(inst_class_of(inst.program, inst.is_drum), inst.is_drum)]


def test_same_seed_same_song_other_seed_other_song():
    a, b, c = generate_song(7, 30.0), generate_song(7, 30.0), generate_song(8, 30.0)
    notes = [[(n.pitch, n.start, n.end, n.velocity) for n in i.notes] for i in a.midi.instruments]
    assert notes == [[(n.pitch, n.start, n.end, n.velocity) for n in i.notes] for i in b.midi.instruments]
    assert a.describe() == b.describe() and a.describe() != c.describe()


def test_ranges(songs):
    for s in songs:
        assert 60 <= s.tempo <= 200 and s.style in STYLES and s.mode in MODES
        assert 0 <= s.key < 12 and s.beats in (3, 4)
        assert s.midi.get_end_time() <= s.seconds + 1e-6
        for inst in s.midi.instruments:
            assert inst.notes, "instruments without notes are left out"
            pitches = [n.pitch for n in inst.notes]
            assert 0 <= min(pitches) and max(pitches) <= 127
            assert all(n.end > n.start >= 0 for n in inst.notes)
            assert all(1 <= n.velocity <= 127 for n in inst.notes)
            part = _part(inst)
            assert part == inst.name.split(":")[0], "GM program matches the part it plays"
            if part == "bass":
                assert 28 <= min(pitches) and max(pitches) <= 60
            if part == "drums":
                assert inst.is_drum and set(pitches) <= set(range(27, 88))


def test_default_length_is_varied():
    lengths = [generate_song(seed).seconds for seed in range(30)]
    assert 45 <= min(lengths) and max(lengths) <= 90 and np.std(lengths) > 5


def test_tempo_styles_keys_and_programs_vary(songs):
    assert len({tempo_class(s.tempo) for s in songs}) >= 20
    styles = Counter(s.style for s in songs)
    assert set(styles) == set(STYLES), f"missing styles: {set(STYLES) - set(styles)}"
    assert len({s.key for s in songs}) == 12 and len({s.mode for s in songs}) >= 5
    programs = {p: set() for p in PARTS}
    for s in songs:
        for inst in s.midi.instruments:
            programs[_part(inst)].add(inst.program)
    assert len(programs["bass"]) >= 5 and len(programs["piano"]) >= 5
    assert len(programs["guitar"]) >= 5 and len(programs["others"]) >= 20
    assert len(programs["drums"]) >= 4  # drum kits
    families = {inst_class_of(p, False) for p in programs["others"]}
    assert {"Strings", "Brass", "Reed", "Organ", "Synth Lead", "Synth Pad"} <= families


def test_every_part_present_and_absent_in_a_fair_share(songs):
    """Per section: each part sounds in some sections and is silent in a fair share of them."""
    bars_on = np.zeros(len(PARTS))
    bars = 0
    songs_with = Counter()
    for s in songs:
        for sec in s.sections:
            bars_on += np.array(sec.parts) * sec.bars
            bars += sec.bars
        for inst in s.midi.instruments:
            songs_with[_part(inst)] += 1 / sum(_part(i) == _part(inst) for i in s.midi.instruments)
    share = bars_on / bars
    for p, f in zip(PARTS, share, strict=True):
        assert 0.2 < f < 0.9, f"{p} plays in {f:.0%} of the bars"
    for p in PARTS:
        assert 0.2 * N_SONGS < songs_with[p] < N_SONGS, f"{p} in {songs_with[p]:.0f} songs"


def test_sections_repeat_their_material():
    for seed in range(40):
        s = generate_song(seed, 90.0)
        kinds = [sec.kind for sec in s.sections]
        rep = [k for k in set(kinds) if kinds.count(k) > 1]
        if not rep:
            continue
        idx = [i for i, k in enumerate(kinds) if k == rep[0]]
        a, b = s.sections[idx[0]], s.sections[idx[1]]
        if a.bars == b.bars:
            assert [c.name() for bar in a.chords for c in bar] == [c.name() for bar in b.chords for c in bar]
            return
    pytest.fail("no song repeated a section")


def test_drum_fills_and_crashes_mark_sections():
    fills = 0
    for seed in range(30):
        s = generate_song(seed, 60.0)
        drums = [i for i in s.midi.instruments if i.is_drum]
        if drums:
            pitches = Counter(n.pitch for n in drums[0].notes)
            fills += any(pitches[t] for t in (41, 43, 45, 47, 48, 50))
    assert fills >= 5


def test_harmony_helpers():
    c = chord_on(0, "major", 0, False)
    assert c == Chord(0, (0, 4, 7)) and c.name() == "C"
    assert chord_on(9, "minor", 0, True).name() == "Am7"
    assert chord_on(7, "major", 4, True).name() == "D7"  # V7 of G major
    v = voicing(chord_on(2, "major", 0, False), 64, 4)
    assert len(v) == 4 and max(v) - min(v) <= 24 and {p % 12 for p in v} <= {2, 6, 9}


def test_bass_follows_the_harmony():
    hits = total = 0
    for seed in range(20):
        s = generate_song(seed, 40.0)
        bass = [i for i in s.midi.instruments if _part(i) == "bass"]
        if not bass:
            continue
        spb = 60.0 / s.tempo
        bar0 = 0
        chord_at = {}
        for sec in s.sections:
            for b, bar in enumerate(sec.chords):
                chord_at[bar0 + b] = bar
            bar0 += sec.bars
        for n in bass[0].notes:
            beat = n.start / spb
            if abs(beat - round(beat)) > 0.1 or round(beat) % s.beats:
                continue  # downbeats only
            bar = round(beat) // s.beats
            if bar not in chord_at:
                continue
            total += 1
            hits += any(n.pitch % 12 in c.tones for c in chord_at[bar])
    assert total > 50 and hits / total > 0.9


def test_style_programs_belong_to_their_part():
    for st in STYLES.values():
        for programs, family in ((st.bass_programs, "Bass"), (st.piano_programs, "Piano"),
                                 (st.guitar_programs, "Guitar")):
            assert all(inst_class_of(p, False) == family for p in programs), (st.name, family)
        for role, programs in st.others:
            assert all(inst_class_of(p, False) not in ("Bass", "Piano", "Guitar") for p in programs), (st.name, role)


def test_form_fills_the_song_and_closes():
    import math

    closed = 0
    for seed in range(25):
        s = generate_song(seed, 75.0)
        need = math.ceil(75.0 / (s.beats * 60.0 / s.tempo))
        assert sum(sec.bars for sec in s.sections) == need
        assert all(sec.bars >= 1 for sec in s.sections)
        closed += s.sections[-1].kind == "outro"
    assert closed >= 5


def test_key_changes_and_gestures_occur(songs):
    modulated = gestures = 0
    for s in songs:
        modulated += len({sec.key for sec in s.sections}) > 1
        gestures += any(i.pitch_bends or i.control_changes for i in s.midi.instruments)
    assert 5 <= modulated <= 0.4 * N_SONGS and gestures >= 20


def test_melodic_phrases_answer_their_call():
    from trainer.data.compose import Note, answer_bar

    call = [Note(64, 0.0, 1.0, 90), Note(67, 1.0, 0.5, 80), Note(65, 2.0, 2.0, 85)]
    g7 = chord_on(0, "major", 4, False)  # G in C major
    ans = answer_bar(call, [g7], 0, "major", 4, 55, 84)
    assert [n.start for n in ans] == [0.0, 1.0, 2.0] and [n.dur for n in ans] == [1.0, 0.5, 2.0]
    assert ans[0].pitch % 12 in g7.tones
    assert all(n.pitch % 12 in MODES["major"] for n in ans)
    steps = np.sign(np.diff([n.pitch for n in ans]))
    assert list(steps) == list(np.sign(np.diff([n.pitch for n in call])))


def _music_id(songs):
    from trainer.data.identity import BeatGrid, music_id, part_signature

    out = {}
    for p in PARTS:
        first, second = [], []
        for s in songs:
            grid = BeatGrid.constant(s.tempo, s.beats, s.seconds)
            insts = [i for i in s.midi.instruments if _part(i) == p]
            first.append(part_signature(insts, grid, 0.0, s.seconds / 2, p == "drums"))
            second.append(part_signature(insts, grid, s.seconds / 2, s.seconds, p == "drums"))
        out[p] = music_id(first, second)[0]
    return out


def test_each_song_has_parts_of_its_own(monkeypatch):
    """Music-ID on the parts' MIDI: a song's first half finds its own second half among 60
    songs far more often when each song draws its identity than when all share one."""
    from trainer.data import compose

    own = _music_id([generate_song(seed, 40.0) for seed in range(60)])
    draw = compose.draw_identity
    monkeypatch.setattr(compose, "draw_identity", lambda seed, beats: draw(0, beats))
    shared = _music_id([generate_song(seed, 40.0) for seed in range(60)])
    assert own["drums"] >= shared["drums"] + 0.15 and own["drums"] >= 0.55
    assert own["others"] >= shared["others"] + 0.08
    assert all(own[p] >= shared[p] for p in PARTS)
    assert np.mean([own[p] - shared[p] for p in PARTS]) >= 0.08


def test_identity_is_drawn_per_song_and_recorded():
    a, b = generate_song(5, 20.0), generate_song(6, 20.0)
    assert a.describe()["identity"] == generate_song(5, 20.0).describe()["identity"]
    assert a.describe()["identity"] != b.describe()["identity"]
    kits = {generate_song(seed, 8.0).plans[0].program for seed in range(60)
            if generate_song(seed, 8.0).plans[0].is_drum}
    assert len(kits) >= 6  # kits beyond each style's short list
