if __name__ == "__main__":
    from mcp_trainer.cli import main

    raise SystemExit(main())
