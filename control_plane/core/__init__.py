"""The pure core: what a rollout is, how a tick moves it, and how a canary is judged. No I/O."""
