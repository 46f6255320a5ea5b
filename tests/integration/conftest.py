"""pytest fixtures shared by the deployctl end-to-end tests."""
import pytest

from harness import Deployment


@pytest.fixture
def deployment():
    """Factory: `deployment(SPEC_TEXT, name=...)` makes a private Deployment. At teardown every
    one is brought down; the test fails if a process of it outlived `down`."""
    made = []

    def make(spec: str, **kwargs) -> Deployment:
        made.append(Deployment(spec, **kwargs))
        return made[-1]

    yield make
    problems = [problem for dep in made for problem in dep.close()]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def measure(capsys):
    """`measure(text)` shows a measured number on the terminal, even for a passing test."""
    def show(text: str) -> None:
        with capsys.disabled():
            print(f"\n[measure] {text}")
    return show
