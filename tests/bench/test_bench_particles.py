"""radsvd bench --only particles: the records exist, are consistent and are measured."""

import pytest


@pytest.mark.slow
def test_quick_particle_records(monkeypatch):
    from radsvd.bench import particles

    monkeypatch.setenv("RADSVD_BENCH_PARTICLES_N", "24")
    recs = {r["name"]: r for r in particles.measure(quick=True, log=lambda msg: None)}
    assert set(recs) == {"particles.setup", "particles.memory.n100", "particles.memory.n800",
                         "particles.memory.growth", "particles.e2e.rank6", "particles.e2e.full",
                         "particles.stream"}
    m1, m2 = recs["particles.memory.n100"], recs["particles.memory.n800"]
    assert 0.05 < m1["peak_rss_gib"] < 4 and 0.05 < m2["peak_rss_gib"] < 4
    assert recs["particles.memory.growth"]["ratio"] == pytest.approx(
        m2["peak_rss_gib"] / m1["peak_rss_gib"])
    r6, full = recs["particles.e2e.rank6"], recs["particles.e2e.full"]
    assert r6["speedup_vs_full"] == pytest.approx(full["seconds"] / r6["seconds"])
    assert r6["particles_per_s"] == pytest.approx(24 / r6["seconds"])
    assert r6["loop_particles_per_s"] > 0 and recs["particles.stream"]["ratio"] > 0
