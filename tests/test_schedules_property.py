"""Property tests: any schedule, interrupted anywhere, resumes to the same values."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from optkern import schedules as S

SCHEDULES = st.one_of(
    st.builds(S.step_decay, st.just(1.0), st.integers(1, 20), st.floats(0.05, 1.0)),
    st.builds(S.exponential, st.just(1.0), st.floats(0.5, 1.0)),
    st.builds(S.inverse_time, st.just(1.0), st.floats(0.0, 3.0), st.floats(0.5, 1.0)),
    st.builds(S.cosine_restarts, st.just(1.0), st.integers(1, 10), st.integers(1, 3)),
    st.builds(
        S.cyclic,
        st.just(0.1),
        st.just(1.0),
        st.integers(1, 9),
        st.integers(1, 9),
        st.sampled_from(["triangular", "triangular2", "exp_range"]),
        st.floats(0.9, 1.0),
    ),
    st.builds(S.one_cycle, st.just(1.0), st.integers(20, 80), st.floats(0.1, 0.8)),
)


class Opt:
    def __init__(self):
        self.param_groups = [{"lr": 0.5}, {"lr": 0.05}]


@settings(max_examples=60, deadline=None)
@given(SCHEDULES, st.integers(0, 5), st.integers(0, 40), st.integers(1, 40))
def test_resume_anywhere(sched, warm, cut, rest):
    sched = S.linear_warmup(sched, warm, shift=True)
    ref_opt, opt = Opt(), Opt()
    ref = sched.attach(ref_opt, relative=True)
    run = sched.attach(opt, relative=True)
    for _ in range(cut):
        ref.step()
        run.step()
    state, groups = run.state_dict(), [dict(g) for g in opt.param_groups]
    opt2 = Opt()
    opt2.param_groups = groups
    run2 = S.Scheduler(opt2, sched, relative=True)
    run2.load_state_dict(state)
    for _ in range(rest):
        ref.step()
        run2.step()
        assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in ref_opt.param_groups]
        assert all(math.isfinite(g["lr"]) and g["lr"] >= 0 for g in opt2.param_groups)
