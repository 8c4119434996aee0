"""Request layouts of the model families openpi serves, and what their replies look like.

An openpi server runs a config's input transform on every request: a request that lacks a key the transform reads
fails there (openpi answers with the traceback and closes the connection). A preset is the key layout one family's
transform reads, plus the action columns its output transform returns, so the first reply (or the server's error)
shows a mismatch at once instead of the arm moving on actions of another kind. Facts read from openpi at commit
15a9616 (``src/openpi/policies/{libero,droid,aloha}_policy.py``, ``examples/{libero,droid}/main.py``); the layouts
are ours.

* ``libero`` (pi0/pi0-FAST/pi05 ``*_libero``): ``LiberoInputs`` reads ``observation/image``,
  ``observation/wrist_image``, ``observation/state`` and ``prompt``; the LIBERO example's state is 8-d: EEF position,
  axis-angle (3), and ``robot0_gripper_qpos``, the two finger joints of robosuite's Panda gripper (finger_joint1 in
  [0, 0.04], finger_joint2 in [-0.04, 0], robosuite's panda_gripper.xml). ``LiberoOutputs`` returns 7 columns:
  delta position, delta axis-angle, gripper (-1 open, +1 close): our ``openpi_libero`` convention. This robot has no
  wrist camera: the wrist key gets a black image (LiberoInputs marks it as a real view: expect a weaker model).
* ``droid`` (``pi0_fast_droid``, ``pi05_droid``): ``DroidInputs`` reads ``observation/exterior_image_1_left``,
  ``observation/wrist_image_left``, ``observation/joint_position`` (7), ``observation/gripper_position`` (1, 0 open ..
  1 closed) and ``prompt``; ``DroidOutputs`` returns 8 columns: 7 joint *velocities* and a gripper position. This
  node's action contract is an end-effector delta, so a DROID reply is refused with that reason (the request layout
  is right, so connectivity and the served model can be checked).
* ALOHA (``pi0_aloha*``): no preset. ``AlohaInputs`` reads a nested ``images`` map of up to four cameras and a 14-d
  bimanual ``state``; ``AlohaOutputs`` returns 14 bimanual joint columns. It does not apply to one Franka arm; a reply
  with 14 columns (or metadata carrying ``reset_pose``, which only the ALOHA configs send) is named as ALOHA's.
* ``custom``: ``image_keys`` and ``state_keys`` as given, any reply with at least 7 columns in the chosen convention.
"""

from __future__ import annotations

from dataclasses import dataclass

FRANKA_HAND_MAX_WIDTH = 0.08
"""Opening of the Franka Hand when fully open (m): the scale of the DROID-style 0..1 gripper position."""


@dataclass(frozen=True)
class OpenPIPreset:
    """What one openpi config family reads and returns."""

    name: str
    image_keys: tuple[str, ...]
    """``key=camera|zeros`` per image the input transform reads."""
    state_keys: tuple[str, ...]
    """``key=field,...`` per state vector the input transform reads (fields: openpi.STATE_FIELDS)."""
    action_columns: int
    """Columns of the output transform's ``actions`` (the reply is refused when it has another number)."""
    action_space: str
    """"eef_delta" (usable by this node) or "joint_velocity" (refused with that reason)."""
    source: str
    """Where the layout comes from."""

    @property
    def request_keys(self) -> tuple[str, ...]:
        """Every key a request built with this preset carries (with the prompt key "prompt")."""
        return ("prompt", *(e.partition("=")[0] for e in (*self.image_keys, *self.state_keys)))


OPENPI_PRESETS: dict[str, OpenPIPreset] = {
    "libero": OpenPIPreset(
        name="libero",
        image_keys=("observation/image=camera", "observation/wrist_image=zeros"),
        state_keys=("observation/state=tcp_pos,tcp_rotvec,gripper_qpos",),
        action_columns=7, action_space="eef_delta",
        source="openpi 15a9616 src/openpi/policies/libero_policy.py (LiberoInputs/Outputs), examples/libero/main.py"),
    "droid": OpenPIPreset(
        name="droid",
        image_keys=("observation/exterior_image_1_left=camera", "observation/wrist_image_left=zeros"),
        state_keys=("observation/joint_position=joint_pos", "observation/gripper_position=gripper_closure"),
        action_columns=8, action_space="joint_velocity",
        source="openpi 15a9616 src/openpi/policies/droid_policy.py (DroidInputs/Outputs), examples/droid/main.py"),
}
"""Preset name -> layout (``openpi_preset`` parameter; "custom": none, the keys as configured)."""

ACTION_COLUMNS_OF = {7: "LIBERO (LiberoOutputs: EEF delta + gripper)",
                     8: "DROID (DroidOutputs: 7 joint velocities + gripper)",
                     14: "ALOHA (AlohaOutputs: 14 bimanual joint targets)"}
"""Action column counts of openpi's output transforms, to name the family a reply came from."""
