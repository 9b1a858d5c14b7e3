# cs-vit: instructor-only (the grading runtime; `cs-vit autograder` ships it in the zip)
"""What runs inside the autograder: the trusted parent and the sandboxed child.

``make_autograder`` copies this package into the zip as ``cs_vit_grader``, so its
modules import each other relatively and the parent's modules (``run``,
``sandbox``, ``judge``, ``training``'s data side) never import ``cs_vit``: the
parent does not run a line of the student tree. ``child``, ``cases`` and
``replay`` run in the child process, next to the student's code, and only
compute; what they return is judged by the parent.
"""
