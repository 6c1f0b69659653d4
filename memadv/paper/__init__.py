"""The paper's experiments as data: what each run of Sections 3.1 and 3.2 (and C3's controls) trains
on and is called, in one place below both the code that trains them (memadv.experiments) and the code
that reads them back and draws (memadv.analysis)."""
