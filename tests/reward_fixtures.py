"""A user-style reward function for the `module:function` reward tests."""


def length_reward(prompt, response: str) -> float:
    return float(len(response))
