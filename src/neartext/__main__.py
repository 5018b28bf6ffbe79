from neartext.cli import main

raise SystemExit(main())
