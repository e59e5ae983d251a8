"""The server process never imports the training stack (scikit-learn, Optuna, pandas, torch, transformers,
matplotlib)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def test_a_server_that_trained_and_predicted_never_imported_the_training_stack(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    script = textwrap.dedent(
        f"""
        import sys, anyio
        from mcp import Client
        from mcp_trainer.server import ServerConfig, build_server

        async def main():
            server = build_server(ServerConfig(queue_dir={str(queue_dir)!r}, models_dir={str(models_dir)!r}))
            async with Client(server, mode="legacy") as c:
                r = await c.call_tool("submit_training_task", {{
                    "task_type": "svm_classification", "data_source": {str(blobs_csv)!r},
                    "target_column": "label", "n_trials": 2, "cv_folds": 2}})
                task_id = r.structured_content["task_id"]
                r = await c.call_tool("wait_for_task", {{"task_id": task_id, "timeout_s": 45}})
                assert r.structured_content["status"] == "completed", r
                model_id = r.structured_content["model_id"]
                r = await c.call_tool("predict", {{"model_id": model_id,
                    "rows": [{{"x1": 0.0, "x2": 0.0, "shade": "a"}}]}})
                assert not r.is_error and r.structured_content["n_rows"] == 1, r
                await c.call_tool("get_model_info", {{"model_id": model_id}})
                r = await c.call_tool("get_model_report", {{"model_id": model_id}})
                with anyio.fail_after(60):  # the plots follow the completed task
                    while not r.is_error and r.structured_content["being_drawn"]:
                        await anyio.sleep(0.1)
                        r = await c.call_tool("get_model_report", {{"model_id": model_id}})
                assert not r.is_error and any(b.type == "image" for b in r.content), r
                await c.call_tool("get_queue_status", {{}})
                r = await c.call_tool("submit_finetune_task", {{
                    "task_type": "causal_lm_finetune", "model_path": "/nonexistent/model",
                    "data_source": {str(blobs_csv)!r}}})
                assert r.is_error, r  # checked by the server without importing torch
            stack = ("sklearn", "optuna", "pandas", "torch", "transformers", "peft", "matplotlib", "PIL")
            heavy = sorted(m for m in stack if m in sys.modules)
            print("HEAVY:", ",".join(heavy))

        if __name__ == "__main__":
            anyio.run(main)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "HEAVY: \n" in out.stdout + "\n", out.stdout
