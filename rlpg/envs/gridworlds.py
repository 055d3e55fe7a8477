"""Textbook grid worlds as finite gymnax environments: cliff walking, the aliased gridworld, and a
chain whose best first action starts the longest episode.

All are `FiniteEnv`s: the dynamics are written once, as tables built here, and the same
tables are stepped by gymnax and exported by `tabular_mdp()`. Actions in the grids:
0 = up (north), 1 = right (east), 2 = down (south), 3 = left (west), as in Gymnasium's
CliffWalking-v0.
"""

from __future__ import annotations

import numpy as np

from rlpg.envs.tabular import FiniteEnv

UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3
_MOVES = {UP: (-1, 0), RIGHT: (0, 1), DOWN: (1, 0), LEFT: (0, -1)}


class CliffWalking(FiniteEnv):
    """Cliff walking (Sutton & Barto, Example 6.6) on a 4 × 12 grid.

        row 0   .  .  .  .  .  .  .  .  .  .  .  .
        row 1   .  .  .  .  .  .  .  .  .  .  .  .
        row 2   .  .  .  .  .  .  .  .  .  .  .  .
        row 3   S  C  C  C  C  C  C  C  C  C  C  G

    State s = 12·row + col (S = 48); the agent starts at S = 36 (bottom-left), the goal G = 47
    (bottom-right), the cliff C = 37 … 46. Every step pays −1; a move off the grid leaves
    the agent in place (−1); a move into the cliff pays −100 instead and puts the agent back
    at the start, and the episode goes on; the move into the goal pays −1 and terminates.
    Observation: the one-hot vector of s, [48] float. Episodes are truncated after
    `max_steps_in_episode` steps (default 200).

    Exact MDP (`tabular_mdp()`, S = 48 so logits [48, 4] index like the one-hot observation):
    the goal is absorbing with zero reward; the cliff cells can never be occupied (start
    probability 0, no transition into them) and are given absorbing zero-reward rows. The
    expected undiscounted episode return under the time limit H is
    `finite_horizon_expected_return(mdp, logits, H)`; `expected_return` is the discounted
    J with `gamma` (default 0.99).
    """

    HEIGHT, WIDTH = 4, 12
    START, GOAL = 36, 47
    CLIFF = tuple(range(37, 47))

    def __init__(self, gamma: float = 0.99, max_steps_in_episode: int = 200):
        H, W = self.HEIGHT, self.WIDTH
        S, A = H * W, 4
        P = np.zeros((S, A, S))
        R = np.zeros((S, A))
        for s in range(S):
            if s == self.GOAL or s in self.CLIFF:
                P[s, :, s] = 1.0
                continue
            row, col = divmod(s, W)
            for a, (dr, dc) in _MOVES.items():
                nr, nc = min(max(row + dr, 0), H - 1), min(max(col + dc, 0), W - 1)
                s_next = nr * W + nc
                if s_next in self.CLIFF:
                    P[s, a, self.START], R[s, a] = 1.0, -100.0
                else:
                    P[s, a, s_next], R[s, a] = 1.0, -1.0
        initial = np.zeros(S)
        initial[self.START] = 1.0
        terminal = np.zeros(S, bool)
        terminal[self.GOAL] = True
        super().__init__(P, R, initial, terminal, np.eye(S), gamma=gamma, max_steps_in_episode=max_steps_in_episode)

    @property
    def name(self) -> str:
        return "CliffWalking"


class AliasedGridworld(FiniteEnv):
    """The aliased gridworld (Silver's RL course, lecture 7; CS234): a corridor of 5 cells over
    a wall row with one opening, below the middle cell, into the goal.

        +---+---+---+---+---+        walls seen from each cell, [N, E, S, W]:
        | 0 | 1 | 2 | 3 | 4 |          0: [1, 0, 1, 1]   1: [1, 0, 1, 0]   2: [1, 0, 0, 0]
        +---+---+   +---+---+          3: [1, 0, 1, 0]   4: [1, 1, 1, 0]   goal 5: [0, 1, 1, 1]
                | G |
                +---+

    States 0–4 are the corridor cells (left to right), state 5 the goal G below cell 2. The
    agent observes only the four wall bits of its cell, [N, E, S, W] float: the grey cells
    1 and 3 look the same, so a deterministic policy over observations takes the
    same action in both and, from one side, walks into a corner forever (e.g. "right" at the
    grey cells traps every start at 3 or 4 between cells 3 and 4). A stochastic policy
    (50/50 left/right in the grey cells) reaches the goal from everywhere.

    Each episode starts uniformly in one of the corridor cells 0–4. Every step pays −1; moves
    into walls leave the agent in place; "down" from cell 2 enters the goal and terminates.
    Episodes are truncated after `max_steps_in_episode` steps (default 100).

    Exact MDP (`tabular_mdp()`, S = 6, the goal absorbing with zero reward) over the true
    states, and `features()` φ [6, 4, 16] = wall bits ⊗ action one-hot, for the linear softmax
    over observations (`linear_softmax_policy()`): `features_expected_return(mdp, θ, φ)` is
    its discounted J (γ = `gamma`, default 0.9), and `finite_horizon_expected_return` with
    logits = φθ its expected undiscounted return under the time limit.
    """

    NUM_CELLS = 5
    GOAL = 5
    GREY = (1, 3)
    EXIT = 2  # the corridor cell above the goal

    def __init__(self, gamma: float = 0.9, max_steps_in_episode: int = 100):
        n, S, A = self.NUM_CELLS, self.NUM_CELLS + 1, 4
        P = np.zeros((S, A, S))
        R = np.full((S, A), -1.0)
        walls = np.zeros((S, 4))  # [N, E, S, W]
        for s in range(n):
            walls[s] = [1.0, float(s == n - 1), float(s != self.EXIT), float(s == 0)]
            for a, (_, dc) in _MOVES.items():
                if a == DOWN and s == self.EXIT:
                    s_next = self.GOAL
                else:  # up and down hit walls; left/right move along the corridor
                    s_next = min(max(s + dc, 0), n - 1)
                P[s, a, s_next] = 1.0
        P[self.GOAL, :, self.GOAL] = 1.0
        R[self.GOAL] = 0.0
        walls[self.GOAL] = [0.0, 1.0, 1.0, 1.0]
        initial = np.zeros(S)
        initial[:n] = 1.0 / n
        terminal = np.zeros(S, bool)
        terminal[self.GOAL] = True
        super().__init__(P, R, initial, terminal, walls, gamma=gamma, max_steps_in_episode=max_steps_in_episode)

    @property
    def name(self) -> str:
        return "AliasedGridworld"


class LongEpisodeChain(FiniteEnv):
    """A world whose best first action starts the longest episode: quit now or walk a chain.

        start 0 --walk--> 1 --walk--> 2 ... --walk--> L --any--> end
          |quit           |quit       |quit
         end (r = quit_reward)   end (r = 0)

    States 0..L are the chain (one-hot observations), state L + 1 the terminal end. Actions:
    0 = quit, 1 = walk. At the start, quit ends the episode at once with `quit_reward`; walking
    pays `step_reward` per step from cell 1 on and `end_reward` at cell L, whatever it does
    there; quitting inside the chain pays 0. The optimum walks to the end (a return of
    (L − 1)·step_reward + end_reward), the longest episode; quitting at the start is the
    shortest. An estimator that favours short episodes favours quitting.
    """

    QUIT, WALK = 0, 1

    def __init__(
        self,
        length: int = 4,
        quit_reward: float = 0.5,
        step_reward: float = 0.5,
        end_reward: float = 1.0,
        gamma: float = 0.9,
        max_steps_in_episode: int = 10,
    ):
        if int(length) < 1:
            raise ValueError(f"`length` must be >= 1; got {length}.")
        L = int(length)
        S, A, end = L + 2, 2, L + 1
        P = np.zeros((S, A, S))
        R = np.zeros((S, A))
        P[0, self.QUIT, end], R[0, self.QUIT] = 1.0, quit_reward
        P[0, self.WALK, 1] = 1.0
        for s in range(1, L):
            P[s, self.QUIT, end] = 1.0
            P[s, self.WALK, s + 1], R[s, self.WALK] = 1.0, step_reward
        P[L, :, end], R[L, :] = 1.0, end_reward
        P[end, :, end] = 1.0
        initial = np.zeros(S)
        initial[0] = 1.0
        terminal = np.zeros(S, bool)
        terminal[end] = True
        super().__init__(P, R, initial, terminal, np.eye(S), gamma=gamma, max_steps_in_episode=max_steps_in_episode)

    @property
    def name(self) -> str:
        return "LongEpisodeChain"


class DiscountTrap(FiniteEnv):
    """Nota & Thomas's kind of counterexample: two states that look the same, so one policy
    acts in both, and a discount that makes the first decision matter most.

        s0 --left--> end, r = 1           s0 --right--> s1 (r = 0)
        s1 --right--> end, r = 2          s1 --left--> end, r = 0

    With p = π(right) in both, J_γ = (1 − p) + 2γp². For γ < 1/2 the best policy always goes
    left (J_γ = 1); "right" (J_γ = 2γ) is a worse local optimum. The common update (G_t without
    γ^t) counts s1's preference for "right" as much as s0's and, from the uniform policy, drifts
    there when (1 + γ) > 1 (its field at p is −1 + 2(1 + γ)p, the gradient's −1 + 4γp).
    """

    LEFT, RIGHT = 0, 1

    def __init__(self, gamma: float = 0.4, max_steps_in_episode: int = 4):
        S, A, end = 3, 2, 2
        P = np.zeros((S, A, S))
        R = np.zeros((S, A))
        P[0, self.LEFT, end], R[0, self.LEFT] = 1.0, 1.0
        P[0, self.RIGHT, 1] = 1.0
        P[1, self.RIGHT, end], R[1, self.RIGHT] = 1.0, 2.0
        P[1, self.LEFT, end] = 1.0
        P[end, :, end] = 1.0
        observations = np.array([[1.0], [1.0], [0.0]])  # s0 and s1 look the same
        super().__init__(P, R, [1.0, 0.0, 0.0], [False, False, True], observations, gamma=gamma,
                         max_steps_in_episode=max_steps_in_episode)

    @property
    def name(self) -> str:
        return "DiscountTrap"
